"""Loading an example script as a module (examples/ is not a package)."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The scripts import their sibling `_common.py`, as `python examples/x.py`
# allows by putting examples/ first on sys.path.
if str(ROOT / "examples") not in sys.path:
    sys.path.insert(0, str(ROOT / "examples"))


def load_example(name: str):
    """Imports `examples/<name>.py` and returns the module."""
    spec = importlib.util.spec_from_file_location(
        f"example_{name}", ROOT / "examples" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
