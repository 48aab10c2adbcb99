"""Weights in and out: rnnlab's own files (.safetensors read and written with NumPy
alone, .npz), torch checkpoints read without torch, layers rebuilt from a state_dict, and
the ONNX and Keras converters. Depends on rnnlab.nn."""
from .files import from_state_dict, load, read_weights, save
from .onnx_export import export_onnx
from .onnx_import import OnnxImportError, import_onnx, onnx_layers
from .onnx_result import ImportedLayer
from .safetensors import load_safetensors, save_safetensors
from . import limits
from .torch_file import UnsafeCheckpointError, load_torch

__all__ = ["limits", "save", "load", "read_weights", "from_state_dict", "load_torch",
           "UnsafeCheckpointError", "load_safetensors", "save_safetensors", "export_onnx",
           "import_onnx", "onnx_layers", "ImportedLayer", "OnnxImportError"]
