"""Memoizes the source lookups that Taichi 1.7's Python frontend repeats for every inlined
`ti.func` call, for the duration of one of our kernels' compiles.

Why: a warm start (offline cache filled) still runs Taichi's Python frontend, which turns each
kernel's Python AST into Taichi IR before the cache lookup can key on it. Measured on the ant's
forward kernel (cProfile, a warm cache): about half of that frontend time is spent building a
source-position message for every AST node (`ASTTransformerContext.get_pos_info`, which
re-wraps the source line with `textwrap` each time), and much of the rest re-reading,
re-tokenising and re-wrapping each `ti.func`'s source at every one of its ~460 call sites
(`inspect.getsourcelines`, `textwrap.fill` per line). Both depend only on the function and the
node's position, so their results can be memoized exactly: the IR, its debug information and
therefore the offline cache keys are unchanged (`tests/test_frontend.py` checks that each
memoized value equals Taichi's own).

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


def _memo_pos_info(original):
    def get_pos_info(self, node):
        body = getattr(node, "body", None)
        first_body_line = body[0].lineno if isinstance(body, list) and body else None
        key = (self.file, self.func.func, self.lineno_offset, self.indent, type(node),
               node.lineno, node.end_lineno, node.col_offset, node.end_col_offset, first_body_line)
        msg = _POS.get(key)
        if msg is None:
            msg = _POS[key] = original(self, node)
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
    ctx_cls.get_pos_info = _memo_pos_info(saved_pos)
    kernel_impl._get_tree_and_ctx = _memo_tree_and_ctx(kernel_impl)
    try:
        yield
    finally:
        ctx_cls.get_pos_info = saved_pos
        kernel_impl._get_tree_and_ctx = saved_tree
