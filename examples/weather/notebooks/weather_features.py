"""Feature transformers of the weather example, shared by the features and train notebooks.

They are plain scikit-learn transformers, so the fitted preprocessing ships inside the model (MLflow logs this file
with it via `code_paths`), and each registers an ONNX converter, so the whole pipeline exports to ONNX with skl2onnx.
"""
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

FEATURES = ['precipitation', 'temp_max', 'temp_min', 'wind', 'month']  # model input, in this order
CLASSES = ['drizzle', 'fog', 'rain', 'snow', 'sun']
# Exactly the types a saved model of this example may contain beyond scikit-learn's defaults (skops refuses others).
TRUSTED_TYPES = ['weather_features.QuantileClipper', 'weather_features.WeatherFeatures', 'sklearn.tree._tree.Tree',
                 'numpy.dtype']


class QuantileClipper(BaseEstimator, TransformerMixin):
    "Cap each column to its [low, high] quantiles seen in training (outliers stop dominating the SVM's scale)."
    def __init__(self, low=0.05, high=0.95):
        self.low, self.high = low, high

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=float)
        self.lower_, self.upper_ = np.nanquantile(X, self.low, axis=0), np.nanquantile(X, self.high, axis=0)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        return np.clip(np.asarray(X, dtype=float), self.lower_, self.upper_)


class WeatherFeatures(BaseEstimator, TransformerMixin):
    "Append derived features to [precipitation, temp_max, temp_min, wind, month]: temperature range and season."
    def fit(self, X, y=None):
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X):
        X = np.asarray(X, dtype=float)
        temp_range = X[:, 1] - X[:, 2]
        season = np.floor(np.mod(X[:, 4], 12) / 3)  # 0 winter (Dec-Feb), 1 spring, 2 summer, 3 autumn
        return np.column_stack([X, temp_range, season])


def _register_onnx():
    "ONNX converters (shape calculator + graph) for both transformers, in skl2onnx's algebra API."
    from skl2onnx import update_registered_converter
    from skl2onnx.algebra.onnx_ops import OnnxConcat, OnnxDiv, OnnxFloor, OnnxMax, OnnxMin, OnnxMod, OnnxSlice, OnnxSub
    from skl2onnx.common.data_types import FloatTensorType

    def shape(extra):
        def calc(operator):
            n = operator.inputs[0].type.shape[1]
            operator.outputs[0].type = FloatTensorType([None, None if n is None else n + extra])
        return calc

    def clip(scope, operator, container):
        op, opv, x = operator.raw_operator, container.target_opset, operator.inputs[0]
        y = OnnxMin(OnnxMax(x, op.lower_.astype(np.float32), op_version=opv), op.upper_.astype(np.float32),
                    op_version=opv, output_names=operator.outputs[:1])
        y.add_to(scope, container)

    def derive(scope, operator, container):
        opv, x = container.target_opset, operator.inputs[0]

        def col(i):
            return OnnxSlice(x, np.array([i], dtype=np.int64), np.array([i + 1], dtype=np.int64),
                             np.array([1], dtype=np.int64), op_version=opv)
        rng = OnnxSub(col(1), col(2), op_version=opv)
        season = OnnxFloor(OnnxDiv(OnnxMod(col(4), np.array([12], dtype=np.float32), fmod=1, op_version=opv),
                                   np.array([3], dtype=np.float32), op_version=opv), op_version=opv)
        OnnxConcat(x, rng, season, axis=1, op_version=opv, output_names=operator.outputs[:1]).add_to(scope, container)

    update_registered_converter(QuantileClipper, 'WeatherQuantileClipper', shape(0), clip)
    update_registered_converter(WeatherFeatures, 'WeatherFeatures', shape(2), derive)


def to_onnx(model, n_features=len(FEATURES)):
    "The fitted pipeline as an ONNX model taking one float tensor [n, len(FEATURES)], labels as strings."
    from skl2onnx import to_onnx as _to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    _register_onnx()
    return _to_onnx(model, initial_types=[('input', FloatTensorType([None, n_features]))],
                    options={'zipmap': False}, target_opset=17)
