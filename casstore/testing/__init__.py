"""Test helpers shipped with casstore: the store conformance suite and a moto S3 server.

Importing this package imports neither pytest nor moto; its modules do.
"""
