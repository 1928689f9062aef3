"""Property-based tests (hypothesis): parameter coercion, the gate grammar and the cache key."""
import operator

from hypothesis import given
from hypothesis import strategies as st

from mlops_nb.config import Gate
from mlops_nb.params import Param, ParamError, coerce
from mlops_nb.plan import cache_key

text = st.text(max_size=40)


@given(st.integers())
def test_int_round_trip(i):
    assert coerce(Param('n', 'int', 0), str(i), 'nb.ipynb', 'command line') == i


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_round_trip(x):
    assert coerce(Param('x', 'float', 0.0), repr(x), 'nb.ipynb', 'command line') == x


@given(st.booleans())
def test_bool_round_trip(b):
    assert coerce(Param('b', 'bool', False), str(b).lower(), 'nb.ipynb', 'command line') is b


@given(text)
def test_bad_text_is_a_param_error_or_a_value_of_the_type(s):
    for p in (Param('n', 'int', 0), Param('x', 'float', 0.0), Param('b', 'bool', False), Param('l', 'list', [])):
        try: v = coerce(p, s, 'nb.ipynb', 'command line')
        except ParamError as e: assert str(e).startswith(f"nb.ipynb: parameter '{p.name}' expects {p.type}")
        else: assert isinstance(v, {'int': int, 'float': float, 'bool': bool, 'list': list}[p.type])


@given(st.integers(), st.booleans())
def test_yaml_values_are_checked_not_converted(i, b):
    assert coerce(Param('x', 'float', 0.0), i, 'nb.ipynb', 'mlops.yaml') == float(i)
    try: coerce(Param('n', 'int', 0), b, 'nb.ipynb', 'mlops.yaml')
    except ParamError: pass
    else: raise AssertionError('a bool is not an int')


OPS = {'>=': operator.ge, '<=': operator.le, '>': operator.gt, '<': operator.lt, '==': operator.eq, '!=': operator.ne}
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(st.sampled_from(list(OPS)), finite, finite)
def test_gate_against_a_number(op, bound, value):
    g = Gate('m', f'{op} {bound!r}')
    assert g.check({'m': value}, None)['passed'] == OPS[op](value, bound)


@given(st.sampled_from(list(OPS)), st.sampled_from(['+', '-', '*']), finite, finite, finite)
def test_gate_against_the_champion(op, arith, k, champ, value):
    g = Gate('m', f'{op} champion {arith} {k!r}')
    bound = {'+': champ + k, '-': champ - k, '*': champ * k}[arith]
    assert g.check({'m': value}, {'m': champ})['passed'] == OPS[op](value, bound)


@given(text)
def test_any_text_is_refused_with_the_grammar_message_or_is_a_gate_that_needs_its_metric(s):
    try: g = Gate('m', s)
    except ValueError as e:
        assert 'cannot parse gate' in str(e)
        return
    assert g.check({}, {'m': 1.0})['passed'] is False   # whatever it says, a gate never passes without its metric


@given(st.sampled_from(["__import__('os').system('x')", "eval('1')", ">= champion.__class__", ">= 1; import os",
                        ">= (lambda: 1)()", ">= open('/etc/passwd')", ">= 0.8 or True"]))
def test_code_is_never_a_gate(s):
    try: Gate('m', s)
    except ValueError: return
    raise AssertionError(f'{s!r} parsed as a gate')


inputs = st.dictionaries(st.text(min_size=1, max_size=8), st.text(min_size=64, max_size=64, alphabet='0123456789abcdef'),
                         max_size=3)
params = st.dictionaries(st.text(min_size=1, max_size=8), st.one_of(st.integers(), st.text(max_size=5), st.booleans()),
                         max_size=3)


@given(text, params, inputs, st.lists(text, max_size=2))
def test_cache_key_is_a_function_of_its_inputs(code, p, i, up):
    assert cache_key(code, p, i, up) == cache_key(code, dict(reversed(list(p.items()))), i, up)


@given(text, params, inputs, st.lists(text, max_size=2), text)
def test_any_change_changes_the_key(code, p, i, up, extra):
    k = cache_key(code, p, i, up)
    assert cache_key(code + extra + '\n', p, i, up) != k
    assert cache_key(code, {**p, '__new__': extra}, i, up) != k
    assert cache_key(code, p, {**i, 'new/input.csv': '0' * 64}, up) != k
    assert cache_key(code, p, i, [*up, extra]) != k
    if p:
        name = next(iter(p))
        assert cache_key(code, {**p, name: [p[name]]}, i, up) != k
