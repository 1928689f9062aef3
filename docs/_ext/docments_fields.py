"""Parameter docs from docments (nbdev's style: a comment after each parameter) in the API reference.

autodoc reads docstrings only; `fastcore.docments` reads the comments beside parameters, as nbdev's `show_doc`
does. Each documented parameter becomes a `:param:` field of the docstring autodoc renders."""
import inspect


def _fields(app, what, name, obj, options, lines):
    if what not in ('function', 'method', 'class') or not callable(obj): return
    from fastcore.docments import docments
    try: docs = docments(obj, full=True)
    except Exception: return  # a builtin or something inspect cannot read: its docstring alone
    params = [(k, v) for k, v in docs.items() if k != 'return' and v.get('docment')]
    if not params: return
    lines.append('')
    for k, v in params:
        default = v.get('default', inspect.Parameter.empty)
        shown = '' if default is inspect.Parameter.empty else f" (default: ``{default!r}``)"
        lines.append(f":param {k}: {v['docment']}{shown}")


def setup(app):
    app.connect('autodoc-process-docstring', _fields)
    return {'parallel_read_safe': True}
