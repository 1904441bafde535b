"""MJCF loading: inertia as MuJoCo compiles it, defaults, angles; errors name element and line."""
import numpy as np
import pytest
import torch

import mbmix_taichi as mt
from mbmix_taichi.errors import MbmixError, OptionError
from mbmix_taichi.physics.articulated_model import quat_to_mat
from mbmix_taichi.physics.mjcf import MJCFError, load_mjcf

from _rigid_models import FLOATING, PENDULUM_CART, SLIDES, write

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


BAD = [
    ("<mujoco><worldbody><body><joint type='ball'/><geom size='1'/></body></worldbody></mujoco>", "joint", 1, "ball"),
    ("<mujoco>\n<worldbody>\n<body>\n<geom type='mesh' size='1'/>\n</body></worldbody></mujoco>", "geom", 4, "mesh"),
    ("<mujoco>\n<tendon><fixed/></tendon></mujoco>", "fixed", 2, "not supported"),
    ("<mujoco>\n<worldbody>\n  <body>\n    <joint axis='0 0'/>\n<geom size='1'/></body></worldbody></mujoco>",
     "joint", 4, "3 numbers"),
    ("<mujoco><worldbody>\n<body>\n<joint/>\n<geom size='0.1'/>\n</body>\n</worldbody>\n<actuator>\n"
     "<motor joint='nope'/>\n</actuator></mujoco>", "motor", 8, "unknown joint"),
    ("<mujoco><worldbody><body><inertial mass='1'/><joint/></body></worldbody></mujoco>", "inertial", 1, "pos"),
    ("<mujoco><worldbody>\n<body name='a'>\n<body>\n<freejoint/>\n</body></body></worldbody></mujoco>",
     "freejoint", 4, "free joint"),
    ("<mujoco>\n<worldbody>\n<body>\n<geom size='0.1' foo='1'/>\n</body></worldbody></mujoco>", "geom", 4, "foo"),
]


@pytest.mark.parametrize("text,element,line,words", BAD)
def test_bad_mjcf_names_element_and_line(tmp_path, text, element, line, words):
    p = write(tmp_path, "bad", text)
    with pytest.raises(MJCFError) as e:
        load_mjcf(p)
    msg = str(e.value)
    assert f"<{element}>" in msg and f":{line}:" in msg and words in msg, msg
    assert isinstance(e.value, MbmixError)


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
