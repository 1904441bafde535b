"""MJCF loading: inertia as MuJoCo compiles it, defaults, angles; errors name element and line."""
import numpy as np
import pytest
import torch

import mbmix_taichi as mt
from mbmix_taichi.errors import MbmixError, OptionError
from mbmix_taichi.physics.articulated_model import quat_to_mat
from mbmix_taichi.physics import mjcf
from mbmix_taichi.physics.mjcf import MJCFError, MJCFWarning, load_mjcf

from _rigid_models import DROP, FLOATING, PENDULUM_CART, SLIDES, write

GEOMS = """<mujoco>
  <compiler angle="degree"/>
  <default><geom density="700"/><default class="heavy"><geom density="3000"/></default></default>
  <worldbody>
    <body name="b" pos="0 0 1" euler="30 0 45" childclass="heavy">
      <joint type="hinge" axis="0 0 1"/>
      <geom type="sphere" size="0.1" pos="0.1 0 0"/>
      <geom type="capsule" fromto="0 0 0 0.2 0.1 -0.3" size="0.05" class="main"/>
      <geom type="box" size="0.1 0.05 0.02" pos="0 0.1 0" axisangle="1 1 0 30"/>
      <geom type="cylinder" size="0.03 0.1" pos="0 0 0.2" mass="0.3" quat="0.9 0 0.3 0.1"/>
    </body>
  </worldbody>
</mujoco>"""


@pytest.mark.parametrize("text", [GEOMS, PENDULUM_CART, SLIDES, FLOATING])
def test_inertia_matches_mujoco(tmp_path, text):
    import mujoco
    p = write(tmp_path, "m", text)
    mm = mujoco.MjModel.from_xml_path(p)
    m = load_mjcf(p)
    assert (m.nq, m.nv, m.nu) == (mm.nq, mm.nv, mm.nu)
    for b in range(1, mm.nbody):
        ours = m.bodies[b]
        assert ours.mass == pytest.approx(mm.body_mass[b], rel=1e-12)
        np.testing.assert_allclose(ours.ipos, mm.body_ipos[b], atol=1e-12)
        R = quat_to_mat(mm.body_iquat[b])
        np.testing.assert_allclose(ours.inertia, R @ np.diag(mm.body_inertia[b]) @ R.T, atol=1e-12)
        np.testing.assert_allclose(quat_to_mat(ours.quat), quat_to_mat(mm.body_quat[b]), atol=1e-12)
        np.testing.assert_allclose(ours.pos, mm.body_pos[b], atol=1e-12)
    for j in range(mm.njnt):
        np.testing.assert_allclose(m.joints[j].axis, mm.jnt_axis[j], atol=1e-12)
        np.testing.assert_allclose(m.joints[j].pos, mm.jnt_pos[j], atol=1e-12)


BAD = [  # (text, element named in the message, line, words): our refusals and MuJoCo's compiler errors
    ("<mujoco><worldbody><body><joint type='ball'/><geom size='1'/></body></worldbody></mujoco>", "<joint>", 1, "ball"),
    ("<mujoco>\n<worldbody>\n<body>\n<geom type='mesh' size='1'/>\n</body></worldbody></mujoco>", "mesh geom", 4,
     "meshid"),
    ("<mujoco>\n<tendon><fixed/></tendon></mujoco>", "tendon", 2, "cannot be empty"),
    ("<mujoco>\n<worldbody>\n  <body>\n    <joint axis='0 0'/>\n<geom size='1'/></body></worldbody></mujoco>",
     "<joint>", 4, "'axis' does not have enough data"),
    ("<mujoco><worldbody>\n<body>\n<joint/>\n<geom size='0.1'/>\n</body>\n</worldbody>\n<actuator>\n"
     "<motor joint='nope'/>\n</actuator></mujoco>", "actuator", 8, "unknown transmission target 'nope'"),
    ("<mujoco><worldbody><body><inertial mass='1'/><joint/></body></worldbody></mujoco>", "<inertial>", 1, "'pos'"),
    ("<mujoco><worldbody>\n<body name='a'>\n<geom size='1'/>\n<body>\n<freejoint/>\n<geom size='1'/>\n"
     "</body></body></worldbody></mujoco>", "free joint", 4, "only be used on top level"),
    ("<mujoco>\n<worldbody>\n<body>\n<geom size='0.1' foo='1'/>\n</body></worldbody></mujoco>", "<geom>", 4, "foo"),
    ("<mujoco><worldbody><body name='b'>\n<joint name='a'/>\n<joint name='a'/><geom size='1'/></body></worldbody>"
     "</mujoco>", "<joint>", 3, "repeated name 'a'"),
    ("<mujoco>\n<worldbody>\n<body>\n<joint/>\n<geom size='1' mass='-1'/></body></worldbody></mujoco>", "<geom>", 5,
     "negative"),
    ("<mujoco>\n<worldbody>\n<body>\n<joint type='free' frictionloss='1' name='fj'/><geom size='1'/></body>"
     "</worldbody></mujoco>", "<joint name='fj'>", 4, "frictionloss on a free joint"),
    ("<mujoco>\n<worldbody>\n<body>\n<joint name='x'/><geom size='1'/></body></worldbody><actuator>\n"
     "<intvelocity joint='x' kp='3' actrange='-1 1'/></actuator></mujoco>", "<intvelocity>", 5, "actuator dynamics"),
    ("<mujoco>\n<worldbody>\n<body>\n<joint name='x'/><geom size='1'/></body></worldbody><actuator>\n"
     "<damper name='m' joint='x' kv='1' ctrlrange='0 1'/></actuator></mujoco>", "<damper name='m'>", 5,
     "gaintype='fixed'"),
    ("<mujoco><asset><mesh name='t' vertex='0 0 0 1 0 0 0 1 0 0 0 1'/></asset>\n<worldbody>"
     "<geom type='plane' size='1 1 1'/>\n<body>\n<joint name='x'/>\n<geom type='mesh' mesh='t'/></body></worldbody>"
     "</mujoco>", "<geom>", 5, "ground contact of mesh geoms"),
    ("<mujoco>\n<worldbody>\n<body name='m' mocap='true'>\n<geom size='1'/></body>\n<body>\n<joint/>\n"
     "<geom size='1'/></body></worldbody></mujoco>", "<body name='m'>", 3, "mocap"),
    ("<mujoco>\n<worldbody>\n<body>\n<joint name='x'/><geom size='1'/></body></worldbody><equality>\n"
     "<joint joint1='x'/></equality></mujoco>", "<equality><joint> #0", 5, "equality constraints"),
    ("<mujoco>\n<worldbody>\n<body>\n<joint name='x'/><joint name='y' axis='1 0 0'/><geom size='1'/></body></worldbody>"
     "<tendon><fixed name='c'><joint joint='x' coef='1'/><joint joint='y' coef='1'/></fixed></tendon><equality>\n"
     "<tendon name='c' tendon1='c'/></equality></mujoco>", "<equality><tendon name='c'>", 5, "constraint solver"),
    ("<mujoco>\n<worldbody><site name='a'/>\n<body>\n<joint/><geom name='g' size='0.1'/><site name='b' pos='1 0 0'/>"
     "</body></worldbody><tendon>\n<spatial name='w' stiffness='1'><site site='a'/><geom geom='g'/><site site='b'/>"
     "</spatial></tendon></mujoco>", "<spatial name='w'>", 5, "wrap around geoms"),
    ("<mujoco>\n<worldbody><site name='a'/>\n<body>\n<joint/><geom size='0.1'/><site name='b' pos='1 0 0'/>"
     "</body></worldbody><tendon>\n<spatial name='s'><site site='a'/><site site='b'/></spatial></tendon>"
     "<actuator><motor tendon='s'/></actuator></mujoco>", "<spatial name='s'>", 5, "actuators on spatial tendons"),
]


@pytest.mark.parametrize("text,element,line,words", BAD)
def test_bad_mjcf_names_element_and_line(tmp_path, text, element, line, words):
    p = write(tmp_path, "bad", text)
    with pytest.raises(MJCFError) as e:
        load_mjcf(p)
    msg = str(e.value)
    assert element in msg and f"bad.xml:{line}:" in msg and words in msg, msg
    assert "\n" not in msg and isinstance(e.value, MbmixError)


COMPILER = """<mujoco>
  <compiler angle="degree" settotalmass="7" boundmass="0.01" boundinertia="0.001" eulerseq="zyx"/>
  <worldbody>
    <frame pos="0 0 1" euler="0 0 30">
      <body name="a" xyaxes="0 1 0 -1 0 0" gravcomp="0.5">
        <joint name="h" axis="1 0 0" springdamper="0.5 0.2"/>
        <geom type="box" size="0.1 0.2 0.3" euler="10 20 30"/>
        <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.05" shellinertia="true"/>
        <body name="b" pos="0.3 0 0"><joint name="s" type="slide" axis="0 0 1"/><geom size="0.001"/></body>
      </body>
    </frame>
  </worldbody>
</mujoco>"""


def test_compiler_semantics_come_from_mujoco(tmp_path):
    """settotalmass, boundmass/boundinertia, shellinertia, frame, eulerseq, springdamper, gravcomp."""
    import mujoco
    p = write(tmp_path, "c", COMPILER)
    mm = mujoco.MjModel.from_xml_path(p)
    m = load_mjcf(p)
    assert sum(b.mass for b in m.bodies) == pytest.approx(7.0, rel=1e-12)
    for b in range(1, mm.nbody):
        assert m.bodies[b].mass == pytest.approx(mm.body_mass[b], rel=1e-12)
        R = quat_to_mat(mm.body_iquat[b])
        np.testing.assert_allclose(m.bodies[b].inertia, R @ np.diag(mm.body_inertia[b]) @ R.T, atol=1e-12)
    assert m.bodies[1].gravcomp == 0.5
    assert m.joints[0].stiffness == pytest.approx(mm.jnt_stiffness[0]) and m.joints[0].damping > 0


def test_option_flags_are_applied(tmp_path):
    text = FLOATING.replace('<option timestep="0.002"/>',
                            '<option timestep="0.002"><flag gravity="disable" damper="disable"/></option>')
    m = load_mjcf(write(tmp_path, "f", text))
    assert np.all(m.gravity == 0) and all(j.damping == 0 for j in m.joints)
    text = DROP.replace('<option timestep="0.001"/>', '<option timestep="0.001"><flag contact="disable"/></option>')
    assert load_mjcf(write(tmp_path, "d", text)).ground is None


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-8-sig", "latin-1"])
def test_any_declared_encoding(tmp_path, encoding):
    text = PENDULUM_CART.replace('name="cart"', 'name="chariot_\u00e9t\u00e9"')
    ref = load_mjcf(write(tmp_path, "ref", text))
    decl = {"utf-16-le": "UTF-16", "utf-8-sig": "UTF-8", "latin-1": "ISO-8859-1"}.get(encoding, "UTF-16")
    data = f'<?xml version="1.0" encoding="{decl}"?>\n{text}'.encode(encoding)
    p = tmp_path / "enc.xml"
    p.write_bytes(data)
    m = load_mjcf(str(p))
    assert m.bodies[1].name == "chariot_\u00e9t\u00e9"
    assert [b.mass for b in m.bodies] == [b.mass for b in ref.bodies] and m.nv == ref.nv


def test_undecodable_file_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.xml"
    p.write_bytes(b"<mujoco><worldbody><body name='\xff\xfe\xfa'/></worldbody></mujoco>")
    with pytest.raises(MJCFError, match="not valid UTF-8|malformed XML"):
        load_mjcf(str(p))


def _chain(n):
    body = "<body pos='0 0 -0.1'><joint axis='0 1 0'/><geom size='0.01'/>"
    return "<mujoco><worldbody>" + body * n + "</body>" * n + "</worldbody></mujoco>"


@pytest.mark.parametrize("n,words", [(200, "MAX_BODY_DEPTH"), (2000, "MAX_BODY_DEPTH")])
def test_deep_body_chains_are_refused_past_the_documented_limit(tmp_path, n, words):
    with pytest.raises(MJCFError, match=words):
        load_mjcf(write(tmp_path, "deep", _chain(n)))
    assert len(load_mjcf(write(tmp_path, "ok", _chain(mjcf.MAX_BODY_DEPTH))).bodies) == mjcf.MAX_BODY_DEPTH + 1


def test_dof_and_body_limits_are_checked_with_a_clear_error(tmp_path, monkeypatch):
    text = _chain(40)
    assert load_mjcf(write(tmp_path, "ok", text)).nv == 40
    monkeypatch.setattr(mjcf, "MAX_DOFS", 39)
    with pytest.raises(MJCFError, match="MAX_DOFS=39"):
        load_mjcf(write(tmp_path, "dofs", text))
    monkeypatch.setattr(mjcf, "MAX_BODIES", 30)
    with pytest.raises(MJCFError, match="MAX_BODIES"):
        load_mjcf(write(tmp_path, "bodies", text))


def test_deep_xml_and_large_files_are_refused(tmp_path):
    with pytest.raises(MJCFError, match="nested deeper"):
        load_mjcf(write(tmp_path, "x", "<mujoco>" + "<custom>" * 5000 + "</custom>" * 5000 + "</mujoco>"))
    p = tmp_path / "big.xml"
    p.write_bytes(b"<mujoco>" + b" " * (mjcf.MAX_FILE_BYTES + 1) + b"</mujoco>")
    with pytest.raises(MJCFError, match="documented limit"):
        load_mjcf(str(p))


def test_zero_dof_model_is_refused(tmp_path):
    with pytest.raises(MJCFError, match="no joints"):
        load_mjcf(write(tmp_path, "z", "<mujoco><worldbody><body><geom size='1'/></body></worldbody></mujoco>"))


def test_warnings_for_integrator_and_static_geometry(tmp_path):
    text = ("<mujoco><option integrator='RK4'/><worldbody><geom type='plane' size='1 1 1'/>"
            "<geom name='rail' type='capsule' fromto='0 0 0 1 0 0' size='0.02'/>"
            "<body><joint/><geom size='0.1'/></body></worldbody></mujoco>")
    with pytest.warns(MJCFWarning) as rec:
        m = load_mjcf(write(tmp_path, "w", text))
    msgs = " | ".join(str(r.message) for r in rec)
    assert "semi-implicit Euler" in msgs and "rail" in msgs and m.ground == 0.0


def test_malformed_xml_names_line(tmp_path):
    p = write(tmp_path, "bad", "<mujoco>\n<worldbody>\n<body>\n</worldbody></mujoco>")
    with pytest.raises(MJCFError, match="line 4"):
        load_mjcf(p)


def test_mjcf_task_requires_model():
    with pytest.raises(OptionError, match="model=PATH"):
        mt.make("mjcf")
    with pytest.raises(MbmixError, match="does not exist"):
        mt.make("mjcf", model="/nonexistent/robot.xml")


def test_mjcf_task_layout_and_actions(tmp_path):
    p = write(tmp_path, "f", FLOATING)
    env = mt.make("mjcf", model=p, dt=0.01, substeps=5, num_envs=2, dtype="float64")
    assert env.state_dim == 7 + 1 + 6 + 1 and env.act_dim == 1 and env.episode_length == 1000
    s = env.get_state()
    np.testing.assert_allclose(s[0, 3:7].numpy(), load_mjcf(p).qpos0()[3:7])
    obs, r, term, trunc, info = env.step(torch.ones(2, 1, dtype=torch.float64))
    assert torch.all(r == 0) and not term.any()
    spec = env.task.render_spec()
    geoms = spec["geoms"](env.get_state()[0].numpy())
    assert len(geoms) == 3 and {g["type"] for g in geoms} == {"box", "sphere", "capsule"}
    assert np.allclose(np.asarray(geoms[0]["rot"]) @ np.asarray(geoms[0]["rot"]).T, np.eye(3))
