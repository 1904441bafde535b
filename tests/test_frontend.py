"""The memoized Taichi frontend (physics/_frontend.py) produces exactly what Taichi's own does."""
import ast
import os
import subprocess
import sys
import textwrap

import pytest
import taichi as ti

from mbmix_taichi import _ti
from mbmix_taichi.physics import _frontend


pytestmark = pytest.mark.skipif(not _frontend._supported(), reason="the memo targets Taichi 1.7's frontend")


def _make_kernel():
    """A fresh kernel (Taichi caches compiled kernels per function object) whose ti.func is
    inlined at several call sites, nested, with multi-line statements and a static loop."""

    @ti.func
    def mix(a, b):
        c = a * 2.0 + b
        if c > 1.0:
            c = (c
                 - 1.0)
        return c

    @ti.func
    def twice(a):
        return mix(a, a) + mix(a, 0.5)

    @ti.kernel
    def k(x: ti.types.ndarray(), n: ti.i32):
        for i in range(n):
            acc = 0.0
            for j in ti.static(range(3)):
                acc += twice(x[i] + j)
            x[i] = mix(acc, x[i])

    return k


def test_memoized_lookups_equal_taichis_own():
    """Every (tree, context) the memo hands out equals what Taichi's own function returns for the
    same call, so the IR cannot differ; every position message names the node's file, line and
    function and quotes its first source line, as Taichi's does (without Taichi's caret hint)."""
    _ti.ensure()
    from taichi.lang import kernel_impl
    from taichi.lang.ast import ast_transformer_utils

    ctx_cls = ast_transformer_utils.ASTTransformerContext
    plain_pos, plain_tree = ctx_cls.get_pos_info, kernel_impl._get_tree_and_ctx
    checked = {"pos": 0, "tree": 0}
    with _frontend.fast_frontend():
        memo_pos, memo_tree = ctx_cls.get_pos_info, kernel_impl._get_tree_and_ctx
        assert memo_pos is not plain_pos and memo_tree is not plain_tree

        def pos(self, node):
            got = memo_pos(self, node)
            ref = plain_pos(self, node)
            header, line = got.splitlines()[:2]
            assert header == ref.splitlines()[0]  # 'File "...", line N, in f:'
            assert line.strip() and line.strip() in ref
            assert line == self.src[node.lineno - 1]
            checked["pos"] += 1
            return got

        def tree_and_ctx(self, *a, **kw):
            tree, ctx = memo_tree(self, *a, **kw)
            ref_tree, ref_ctx = plain_tree(self, *a, **kw)
            assert ast.dump(tree, include_attributes=True) == ast.dump(ref_tree, include_attributes=True)
            for attr in ("src", "file", "lineno_offset", "indent", "is_kernel", "excluded_parameters"):
                assert getattr(ctx, attr) == getattr(ref_ctx, attr), attr
            assert ctx.global_vars.keys() == ref_ctx.global_vars.keys()
            checked["tree"] += 1
            return tree, ctx

        ctx_cls.get_pos_info, kernel_impl._get_tree_and_ctx = pos, tree_and_ctx
        import torch

        x = torch.linspace(-1, 1, 5, dtype=torch.float32)
        _make_kernel()(x, 5)
    # restored on exit
    assert ctx_cls.get_pos_info is plain_pos and kernel_impl._get_tree_and_ctx is plain_tree
    assert checked["tree"] >= 1 + 3 * 3 + 1  # the kernel, twice x 3 (each with 2 mix), the last mix
    assert checked["pos"] > 50


def test_compile_error_still_points_at_the_line():
    _ti.ensure()

    @ti.func
    def bad(a):
        return a + undefined_name_for_the_test  # noqa: F821

    @ti.kernel
    def k(x: ti.types.ndarray()):
        x[0] = bad(x[0])

    import torch

    with _frontend.fast_frontend(), pytest.raises(Exception) as err:
        k(torch.zeros(1, dtype=torch.float32))
    assert "undefined_name_for_the_test" in str(err.value)
    assert "return a + undefined_name_for_the_test" in str(err.value)


_CACHE_SCRIPT = textwrap.dedent("""
    import sys, torch, taichi as ti
    ti.init(arch=ti.cpu, offline_cache=True, offline_cache_file_path=sys.argv[1], log_level=ti.ERROR)
    sys.path.insert(0, sys.argv[2])
    from test_frontend import _make_kernel
    from mbmix_taichi.physics import _frontend
    x = torch.linspace(-1, 1, 5, dtype=torch.float32)
    if sys.argv[3] == "memo":
        with _frontend.fast_frontend():
            _make_kernel()(x, 5)
    else:
        _make_kernel()(x, 5)
    print(x.tolist())
""")


def test_offline_cache_key_unchanged(tmp_path):
    """A kernel compiled with Taichi's plain frontend is found in the offline cache by a process
    that compiles it under the memo (Taichi keys the cache on the IR, so the IR is the same: the
    position messages, which it leaves out of the key, differ), with the same results."""
    cache = tmp_path / "cache"
    here = os.path.dirname(os.path.abspath(__file__))

    def run(mode):
        out = subprocess.run([sys.executable, "-c", _CACHE_SCRIPT, str(cache), here, mode], check=True,
                             capture_output=True, text=True)
        files = sorted(p.relative_to(cache) for p in cache.rglob("*") if p.is_file())
        return out.stdout.strip().splitlines()[-1], files

    plain_out, plain_files = run("plain")
    memo_out, memo_files = run("memo")
    assert any(str(f).endswith(".tic") for f in plain_files), plain_files
    assert memo_out == plain_out
    assert [f for f in memo_files if str(f).endswith(".tic")] == [f for f in plain_files if str(f).endswith(".tic")]
