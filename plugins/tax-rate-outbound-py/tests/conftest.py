import sys
from pathlib import Path

# The plugin module sits beside tests/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
