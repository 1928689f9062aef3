"""Features of the weather example, shared by the features, train, evaluate and register notebooks.

The question: will it rain tomorrow in Seattle? The target is derived from tomorrow's precipitation only, never from
the dataset's `weather` label, whose meaning drifts over the years. A model input row holds what is known at the end
of a day: today's measurements and those of the days before. The derived features (temperature range, rolling
precipitation, season) are computed inside the model by `WeatherFeatures`, a scikit-learn transformer with an ONNX
converter, so a client sends raw measurements and training, serving and ONNX compute them the same way.
"""
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

MEASUREMENTS = ['precipitation', 'temp_max', 'temp_min', 'wind']   # a day, as the station reports it
LAGS = 6                                                           # days of precipitation history
FEATURES = ['day_of_year', *MEASUREMENTS, *(f'precipitation_lag{i}' for i in range(1, LAGS + 1)),
            'temp_max_lag1', 'temp_min_lag1', 'wind_lag1']          # model input, in this order
DERIVED = ['temp_range', 'rain_today', 'precipitation_3d', 'precipitation_7d', 'season_sin', 'season_cos']
TARGET = 'rain_tomorrow'                                           # 'rain' or 'dry'
CLASSES = ['dry', 'rain']
# Exactly the types a saved model of this example may contain beyond scikit-learn's defaults (skops refuses others).
TRUSTED_TYPES = ['weather_features.QuantileClipper', 'weather_features.WeatherFeatures', 'sklearn.tree._tree.Tree',
                 'sklearn.calibration._CalibratedClassifier', 'sklearn.calibration._SigmoidCalibration', 'numpy.dtype']


def make_features(days: pd.DataFrame) -> pd.DataFrame:
    """One row per day: the model input (today and earlier days only) and the target (tomorrow's precipitation > 0).
    Days are put on a daily calendar first, so a missing day is a missing value, never a shifted neighbour."""
    days = days.assign(date=pd.to_datetime(days['date'])).set_index('date').sort_index()
    days = days[MEASUREMENTS].asfreq('D')
    out = pd.DataFrame({'day_of_year': days.index.dayofyear.astype(float)}, index=days.index)
    for c in MEASUREMENTS: out[c] = days[c]
    for i in range(1, LAGS + 1): out[f'precipitation_lag{i}'] = days['precipitation'].shift(i)
    for c in ('temp_max', 'temp_min', 'wind'): out[f'{c}_lag1'] = days[c].shift(1)
    tomorrow = days['precipitation'].shift(-1)
    out[TARGET] = np.where(tomorrow > 0, 'rain', 'dry')
    out = out[tomorrow.notna() & out[FEATURES].notna().all(axis=1)]  # the first days lack history, the last a tomorrow
    return out.reset_index()


def time_split(features: pd.DataFrame, val_days: int, test_days: int):
    "Train, validation and test by date: validation follows training, and the test days follow both."
    last = features['date'].max()
    test_start = last - pd.Timedelta(days=test_days - 1)
    val_start = test_start - pd.Timedelta(days=val_days)
    d = features['date']
    return features[d < val_start], features[(d >= val_start) & (d < test_start)], features[d >= test_start]


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


_COL = {c: i for i, c in enumerate(FEATURES)}
_WEEK = [_COL['precipitation'], *(_COL[f'precipitation_lag{i}'] for i in range(1, LAGS + 1))]


class WeatherFeatures(BaseEstimator, TransformerMixin):
    """Append the derived features to the FEATURES columns: temperature range, whether it rained today, precipitation
    over 3 and 7 days, and the season as a point on a circle (31 December is next to 1 January)."""
    def fit(self, X, y=None):
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X):
        X = np.asarray(X, dtype=float)
        angle = 2 * np.pi * X[:, _COL['day_of_year']] / 365.25
        return np.column_stack([X, X[:, _COL['temp_max']] - X[:, _COL['temp_min']],
                                (X[:, _COL['precipitation']] > 0).astype(float), X[:, _WEEK[:3]].sum(axis=1),
                                X[:, _WEEK].sum(axis=1), np.sin(angle), np.cos(angle)])


def _register_onnx():
    "ONNX converters (shape calculator + graph) for both transformers, in skl2onnx's algebra API."
    from skl2onnx import update_registered_converter
    from skl2onnx.algebra.onnx_ops import (OnnxAdd, OnnxCast, OnnxConcat, OnnxCos, OnnxGreater, OnnxMax, OnnxMin,
                                           OnnxMul, OnnxSin, OnnxSlice, OnnxSub)
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

        def total(cols):
            acc = col(cols[0])
            for i in cols[1:]: acc = OnnxAdd(acc, col(i), op_version=opv)
            return acc
        rng = OnnxSub(col(_COL['temp_max']), col(_COL['temp_min']), op_version=opv)
        rained = OnnxCast(OnnxGreater(col(_COL['precipitation']), np.array([0], dtype=np.float32), op_version=opv),
                          to=1, op_version=opv)  # 1: float
        angle = OnnxMul(col(_COL['day_of_year']), np.array([2 * np.pi / 365.25], dtype=np.float32), op_version=opv)
        OnnxConcat(x, rng, rained, total(_WEEK[:3]), total(_WEEK), OnnxSin(angle, op_version=opv),
                   OnnxCos(angle, op_version=opv), axis=1, op_version=opv,
                   output_names=operator.outputs[:1]).add_to(scope, container)

    update_registered_converter(QuantileClipper, 'WeatherQuantileClipper', shape(0), clip)
    update_registered_converter(WeatherFeatures, 'WeatherFeatures', shape(len(DERIVED)), derive)


def to_onnx(model, n_features=len(FEATURES)):
    "The fitted pipeline as an ONNX model taking one float tensor [n, len(FEATURES)]: labels, then probabilities."
    from skl2onnx import to_onnx as _to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    _register_onnx()
    return _to_onnx(model, initial_types=[('input', FloatTensorType([None, n_features]))],
                    options={'zipmap': False}, target_opset=17)
