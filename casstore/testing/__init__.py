"""Test helpers shipped with casstore: the store conformance suite and real local servers
(moto's S3 in :mod:`.s3`, Azurite in :mod:`.azure`, fake-gcs-server and gcp-storage-emulator
in :mod:`.gcs`).

Importing this package imports neither pytest, moto, nor any cloud SDK; its modules do.
"""
