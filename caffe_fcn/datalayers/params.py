"""param_str of the data layers: a Python dict literal, read with ast.literal_eval and checked key by key."""
import ast
import math
from numbers import Real

REQUIRED = object()


class ParamError(ValueError):
    """A data layer's param_str is not what the layer accepts; the message lists what it does accept."""


def string(value):
    if not isinstance(value, str) or not value:
        raise TypeError('a non-empty string')
    return value


def boolean(value):
    if not isinstance(value, bool):
        raise TypeError('True or False')
    return value


def seed(value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError('an integer or None')
    return value


def pixels(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError('a whole number of pixels >= 0')
    return value


def probability(value):
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value <= 1:
        raise TypeError('a probability in (0, 1]')
    return float(value)


def mean3(value):
    if not isinstance(value, (tuple, list)) or len(value) != 3 or \
            not all(isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise TypeError('a tuple of three finite numbers (B, G, R)')
    return tuple(float(v) for v in value)


def names_from(allowed):
    """A checker for a non-empty list of distinct names drawn from `allowed`."""
    def check(value):
        if not isinstance(value, (tuple, list)) or not value or len(set(value)) != len(value) or \
                not all(isinstance(v, str) and v in allowed for v in value):
            raise TypeError(f"a list of distinct names from {list(allowed)}")
        return list(value)
    return check


def like(declared):
    """A checker for a key of a dataset's own: a value of the declared value's type."""
    def check(value):
        if type(value) is not type(declared):
            raise TypeError(f'a {type(declared).__name__} like the declared {declared!r}')
        return value
    return check


def literal(param_str, layer):
    """The param_str as a dict, read as a literal (never evaluated)."""
    try:
        given = ast.literal_eval(param_str) if param_str.strip() else {}
    except (ValueError, SyntaxError) as e:
        raise ParamError(f"{layer}: param_str {param_str!r} is not a Python dict literal ({e})") from e
    if not isinstance(given, dict):
        raise ParamError(f"{layer}: param_str must be a dict literal, got {type(given).__name__}: {param_str!r}")
    return given


def parse(param_str, spec, layer):
    """The checked parameters: `spec` maps each accepted key to (checker, default or REQUIRED)."""
    given = literal(param_str, layer) if isinstance(param_str, str) else param_str
    accepted = ', '.join(spec)
    unknown = sorted(map(str, set(given) - set(spec)))
    if unknown:
        raise ParamError(f"{layer}: unknown param_str key(s) {unknown}; accepted keys: {accepted}")
    missing = [key for key, (_, default) in spec.items() if default is REQUIRED and key not in given]
    if missing:
        raise ParamError(f"{layer}: param_str lacks required key(s) {missing}; accepted keys: {accepted}")
    params = {}
    for key, (check, default) in spec.items():
        if key not in given:
            params[key] = default
            continue
        try:
            params[key] = check(given[key])
        except TypeError as e:
            raise ParamError(f"{layer}: param_str key {key!r} must be {e}, got {given[key]!r}") from None
    return params
