"""numpy for the modules that need it (the converter, the GGUF and
safetensors readers), with an error that says what to install.

The core bindings (``import dsr1``) do not need numpy."""

try:
    import numpy as np
except ImportError as e:  # ModuleNotFoundError, or a broken installation
    raise ModuleNotFoundError(
        "dsr1.convert, dsr1.gguf and dsr1.safetensors need numpy, which is not installed for "
        "this Python: install it with 'python3 -m pip install numpy' (Debian/Ubuntu: "
        "'apt install python3-numpy'). The rest of the dsr1 package works without it.",
        name="numpy") from e

__all__ = ["np"]
