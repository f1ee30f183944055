"""edgequant: the best deployable quantized LiteRT model for your accuracy, size and speed needs.

The public API is what ``__all__`` lists; tests check it. Every function
returns frozen dataclasses with ``to_dict()``, raises ``EdgequantError``
subclasses and never prints.
"""

from edgequant.analyze import Analysis, analyze, layer_sensitivity
from edgequant.compare import compare
from edgequant.demo import demo
from edgequant.errors import (EdgequantError, EngineError, InputError, ModelCrashError, ModelRunError,
                              UnsafeModelError, UnsupportedError)
from edgequant.calibrate import CalibrationStats
from edgequant.pipeline import RunResult, calibrate, convert, evaluate, quantize, run
from edgequant.qat import PruneResult, QATResult, prune, qat
from edgequant.recipe import Recipe, load_recipe
from edgequant.report.html import ReportFile, write_report
from edgequant.provenance import Provenance
from edgequant.tune import TuneResult, tune
from edgequant.types import (CompareResult, Dataset, EngineName, Evaluation, Fidelity, Finding, FloatModel, IOType,
                             Latency, Precision, QuantizedModel, Scheme, Signature, SizeInfo, TensorSpec,
                             Variant)

__version__ = "0.1.0"

__all__ = [
    "convert", "calibrate", "quantize", "run", "evaluate", "compare", "demo", "CalibrationStats",
    "analyze", "layer_sensitivity", "Analysis", "Finding",
    "Recipe", "load_recipe",
    "write_report", "ReportFile", "Provenance",
    "tune", "TuneResult",
    "qat", "prune", "QATResult", "PruneResult",
    "Scheme", "EngineName", "IOType", "Precision",
    "FloatModel", "Dataset", "QuantizedModel", "RunResult", "Evaluation", "SizeInfo", "Fidelity", "Latency",
    "Variant", "CompareResult", "Signature", "TensorSpec",
    "EdgequantError", "InputError", "UnsafeModelError", "UnsupportedError", "EngineError", "ModelRunError",
    "ModelCrashError",
    "__version__",
]
