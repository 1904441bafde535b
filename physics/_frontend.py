"""Makes Taichi 1.7's Python frontend cheaper for our kernels' compiles: source lookups memoized
per function, position messages made once per source line.

Why: a warm start (offline cache filled) still runs Taichi's Python frontend, which turns each
kernel's Python AST into Taichi IR before the cache lookup can key on it. Measured on the ant's
forward kernel (cProfile, a warm cache): about half of that frontend time was spent building a
source-position message for every AST node (`ASTTransformerContext.get_pos_info`, which
re-wraps the source line and a caret hint with `textwrap` each time), and much of the rest
re-reading, re-tokenising and re-wrapping each `ti.func`'s source at every one of its ~460 call
sites (`inspect.getsourcelines`, `textwrap.fill` per line). The source lookups depend only on
the function, so they are memoized exactly (the tree and context equal Taichi's own). The
position messages end up in the IR's debug info, which only an error message shows and which
Taichi leaves out of its offline-cache key: here they name the file, line and function and quote
the line, like Taichi's, without the caret hint, and are made once per source line.
`tests/test_frontend.py` checks both, and that a kernel compiled with plain Taichi is found in
the offline cache by a process that compiles it here (the IR is the same).

`fast_frontend()` patches those lookups while it is active and restores Taichi's own functions
after, so kernels other code compiles in the same process see plain Taichi. On another Taichi
version (whose internals may differ), or with MBMIX_TAICHI_PLAIN_FRONTEND=1, it does nothing.
"""
from __future__ import annotations

import ast
import contextlib
import os
import textwrap

_POS: dict = {}  # (function, position of the node, ...) -> Taichi's position message
_SRC: dict = {}  # python function -> (file, filled source lines, first line number, dedented text)


def _supported():
    if os.environ.get("MBMIX_TAICHI_PLAIN_FRONTEND", "") not in ("", "0"):
        return False
    try:
        import taichi
        from taichi.lang import kernel_impl
        from taichi.lang.ast import ast_transformer_utils

        return (tuple(taichi.__version__)[:2] == (1, 7) and hasattr(kernel_impl, "_get_tree_and_ctx")
                and hasattr(ast_transformer_utils.ASTTransformerContext, "get_pos_info"))
    except Exception:
        return False


def _cheap_pos_info():
    """Taichi's position message, in a cheaper form: the file, line and function and the
    statement's first source line, made once per source line (Taichi re-wraps the line and draws a
    caret hint under the node with `textwrap` for every node it visits, ~50 us each, for a
    message only an error shows). Taichi leaves these messages out of its offline-cache key."""

    def get_pos_info(self, node):
        key = (self.func.func, self.file, self.lineno_offset, node.lineno)
        msg = _POS.get(key)
        if msg is None:
            msg = _POS[key] = (f'File "{self.file}", line {node.lineno + self.lineno_offset}, in '
                               f'{self.func.func.__name__}:\n{self.src[node.lineno - 1]}\n')
        return msg

    return get_pos_info


def _source(kernel_impl, func):
    """Taichi 1.7's source preparation of `_get_tree_and_ctx`, done once per function (with
    Taichi's own source lookup, which also finds functions defined in notebooks)."""
    entry = _SRC.get(func)
    if entry is None:
        file = kernel_impl.getsourcefile(func)
        lines, start = kernel_impl.getsourcelines(func)
        lines = [textwrap.fill(line, tabsize=4, width=9999) for line in lines]
        entry = _SRC[func] = (file, lines, start, textwrap.dedent("\n".join(lines)))
    return entry


def _memo_tree_and_ctx(kernel_impl):
    ASTTransformerContext = kernel_impl.ASTTransformerContext

    def _get_tree_and_ctx(self, excluded_parameters=(), is_kernel=True, arg_features=None, args=None,
                          ast_builder=None, is_real_function=False):
        file, src, start_lineno, text = _source(kernel_impl, self.func)
        tree = ast.parse(text)  # a fresh tree each call: the transformer annotates its nodes
        tree.body[0].decorator_list = []
        global_vars = kernel_impl._get_global_vars(self.func)
        if is_kernel or is_real_function:
            for i in self.template_slot_locations:
                global_vars[self.arguments[i].name] = args[i]
        return tree, ASTTransformerContext(
            excluded_parameters=excluded_parameters, is_kernel=is_kernel, func=self, arg_features=arg_features,
            global_vars=global_vars, argument_data=args, src=list(src), start_lineno=start_lineno, file=file,
            ast_builder=ast_builder, is_real_function=is_real_function)

    return _get_tree_and_ctx


@contextlib.contextmanager
def fast_frontend():
    """While active, Taichi's frontend memoizes per-function source and per-node position messages."""
    if not _supported():
        yield
        return
    from taichi.lang import kernel_impl
    from taichi.lang.ast import ast_transformer_utils

    ctx_cls = ast_transformer_utils.ASTTransformerContext
    saved_pos, saved_tree = ctx_cls.get_pos_info, kernel_impl._get_tree_and_ctx
    ctx_cls.get_pos_info = _cheap_pos_info()
    kernel_impl._get_tree_and_ctx = _memo_tree_and_ctx(kernel_impl)
    try:
        yield
    finally:
        ctx_cls.get_pos_info = saved_pos
        kernel_impl._get_tree_and_ctx = saved_tree
