"""Element types: safetensors dtype names, their bit widths, and the torch names for them."""

from __future__ import annotations

SAFETENSORS_BITS: dict[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E4M3": 8,
    "F8_E5M2": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "F8_E8M0": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
}
"""Bits per element of every safetensors dtype whose size casstore checks."""

TORCH_DTYPES: dict[str, tuple[str, int]] = {
    # torch dtype name -> (dtype name reported in TensorInfo, bytes per element)
    "float64": ("F64", 8),
    "float32": ("F32", 4),
    "float16": ("F16", 2),
    "bfloat16": ("BF16", 2),
    "int64": ("I64", 8),
    "int32": ("I32", 4),
    "int16": ("I16", 2),
    "int8": ("I8", 1),
    "uint8": ("U8", 1),
    "uint16": ("U16", 2),
    "uint32": ("U32", 4),
    "uint64": ("U64", 8),
    "bool": ("BOOL", 1),
    "float8_e4m3fn": ("F8_E4M3", 1),
    "float8_e5m2": ("F8_E5M2", 1),
    "float8_e4m3fnuz": ("F8_E4M3FNUZ", 1),
    "float8_e5m2fnuz": ("F8_E5M2FNUZ", 1),
    "float8_e8m0fnu": ("F8_E8M0", 1),
    "complex64": ("C64", 8),
    # No safetensors name; reported under these names.
    "complex128": ("C128", 16),
    "complex32": ("C32", 4),
    "float4_e2m1fn_x2": ("F4_X2", 1),
    "bits8": ("BITS8", 1),
    "bits16": ("BITS16", 2),
    "bits1x8": ("BITS1X8", 1),
    "bits2x4": ("BITS2X4", 1),
    "bits4x2": ("BITS4X2", 1),
    "qint8": ("QI8", 1),
    "quint8": ("QU8", 1),
    "qint32": ("QI32", 4),
    "quint4x2": ("QU4X2", 1),
    "quint2x4": ("QU2X4", 1),
}

TORCH_STORAGE_CLASSES: dict[str, str] = {
    # legacy typed storage class in module ``torch`` -> torch dtype name
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64",
    "QInt8Storage": "qint8",
    "QUInt8Storage": "quint8",
    "QInt32Storage": "qint32",
    "QUInt4x2Storage": "quint4x2",
    "QUInt2x4Storage": "quint2x4",
}

UNTYPED = "uint8"
"""``torch.storage.UntypedStorage`` counts bytes."""
