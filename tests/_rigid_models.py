"""MJCF models written for the articulated-body tests (no contact unless stated)."""

PENDULUM_CART = """<mujoco model="cartpend">
  <compiler angle="radian"/>
  <option timestep="0.002"/>
  <default><joint damping="0.05" armature="0.01"/></default>
  <worldbody>
    <body name="cart" pos="0 0 1">
      <joint name="slider" type="slide" axis="1 0.2 0"/>
      <geom type="box" size="0.2 0.1 0.05"/>
      <body name="p1" pos="0 0 0" euler="0.1 0.2 0.3">
        <joint name="h1" type="hinge" axis="0.3 1 0.1" pos="0 0 0.05"/>
        <geom type="capsule" fromto="0 0 0 0.1 0.05 -0.5" size="0.03"/>
        <body name="p2" pos="0.1 0.05 -0.5">
          <joint name="h2" type="hinge" axis="0 1 0" pos="0.01 0 0"/>
          <joint name="h3" type="hinge" axis="1 0 0"/>
          <inertial pos="0.02 0.01 -0.2" mass="0.7" fullinertia="0.02 0.03 0.025 0.001 -0.002 0.003"/>
          <geom type="sphere" size="0.05" pos="0 0 -0.4"/>
        </body>
      </body>
    </body>
  </worldbody>
  <actuator>
    <motor joint="slider" gear="5" ctrlrange="-1 1"/>
    <motor joint="h2" gear="2"/>
  </actuator>
</mujoco>"""

SLIDES = """<mujoco model="slides">
  <option timestep="0.005" gravity="0 0 -9.81"/>
  <default><joint type="slide" damping="0.3"/><default class="stiff"><joint stiffness="20" springref="0.1"/></default></default>
  <worldbody>
    <body name="a" pos="0 0 0" quat="0.9 0.1 0.3 0.2">
      <joint name="s1" axis="1 0 0"/>
      <geom type="cylinder" size="0.1 0.2" density="500"/>
      <body name="b" pos="0.3 0 0">
        <joint name="s2" axis="0 1 1" class="stiff"/>
        <joint name="h" type="hinge" axis="1 1 0" pos="0 0.1 0"/>
        <geom type="box" size="0.1 0.2 0.05" pos="0.1 0 0" euler="20 10 0"/>
      </body>
    </body>
  </worldbody>
  <actuator><motor joint="s1" gear="3"/><motor joint="h" gear="0.5" ctrlrange="-2 2"/></actuator>
</mujoco>"""

FLOATING = """<mujoco model="floating">
  <option timestep="0.002"/>
  <worldbody>
    <body name="torso" pos="0 0 1" euler="10 20 30">
      <freejoint name="root"/>
      <geom type="box" size="0.2 0.1 0.05"/>
      <geom type="sphere" size="0.1" pos="0.2 0 0"/>
      <body name="leg" pos="0.2 0.1 0">
        <joint name="hip" type="hinge" axis="0 1 1" damping="0.1"/>
        <geom type="capsule" fromto="0 0 0 0.3 0 -0.3" size="0.04"/>
      </body>
    </body>
  </worldbody>
  <actuator><motor joint="hip" gear="3"/></actuator>
</mujoco>"""

CHAIN = """<mujoco model="chain">
  <option timestep="0.0005"/>
  <worldbody>
    <body name="l1" pos="0 0 2">
      <joint name="j1" type="hinge" axis="0 1 0"/>
      <geom type="capsule" fromto="0 0 0 0.3 0 -0.3" size="0.03"/>
      <body name="l2" pos="0.3 0 -0.3">
        <joint name="j2" type="hinge" axis="0 1 0.2"/>
        <geom type="capsule" fromto="0 0 0 0 0.1 -0.4" size="0.03"/>
        <body name="l3" pos="0 0.1 -0.4">
          <joint name="j3" type="hinge" axis="1 0 0"/>
          <geom type="sphere" size="0.06" pos="0 0 -0.2"/>
        </body>
      </body>
    </body>
  </worldbody>
</mujoco>"""

DROP = """<mujoco model="drop">
  <option timestep="0.001"/>
  <worldbody>
    <geom type="plane" size="5 5 0.1"/>
    <body name="box" pos="0 0 0.5" euler="5 10 0">
      <freejoint/>
      <geom type="box" size="0.1 0.1 0.05" density="1000"/>
    </body>
  </worldbody>
</mujoco>"""


def write(tmp_path, name, text):
    p = tmp_path / f"{name}.xml"
    p.write_text(text)
    return str(p)

# fluid forces (inertia-box model, wind), gravity compensation, damping and armature on a free joint
FLUID = """<mujoco model="fluid">
  <option timestep="0.002" density="1.2" viscosity="0.5" wind="0.3 -0.2 0.1"/>
  <worldbody>
    <body name="torso" pos="0 0 1" euler="10 20 30">
      <joint name="root" type="free" damping="0.3" armature="0.02"/>
      <geom type="box" size="0.2 0.1 0.05" density="300"/>
      <geom type="sphere" size="0.1" pos="0.2 0 0" density="300"/>
      <body name="leg" pos="0.2 0.1 0" gravcomp="0.7">
        <joint name="hip" type="hinge" axis="0 1 1" damping="0.1"/>
        <geom type="capsule" fromto="0 0 0 0.3 0 -0.3" size="0.04" density="300"/>
      </body>
    </body>
  </worldbody>
  <actuator><general joint="hip" gear="3" gainprm="0.5" ctrlrange="-1 1"/></actuator>
</mujoco>"""

# fixed tendons: a spring with a dead band, damping, a tendon motor; joint damping too
TENDON = """<mujoco model="tendon">
  <option timestep="0.002"/>
  <worldbody>
    <body name="l1" pos="0 0 2">
      <joint name="j1" type="hinge" axis="0 1 0" damping="0.05"/>
      <geom type="capsule" fromto="0 0 0 0.3 0 -0.3" size="0.03"/>
      <body name="l2" pos="0.3 0 -0.3">
        <joint name="j2" type="hinge" axis="0 1 0.2"/>
        <geom type="capsule" fromto="0 0 0 0 0.1 -0.4" size="0.03"/>
        <body name="l3" pos="0 0.1 -0.4">
          <joint name="j3" type="slide" axis="1 0 0"/>
          <geom type="sphere" size="0.06" pos="0 0 -0.2"/>
        </body>
      </body>
    </body>
  </worldbody>
  <tendon>
    <fixed name="couple" stiffness="4" damping="0.3" springlength="-0.05 0.1">
      <joint joint="j1" coef="1"/><joint joint="j2" coef="-0.7"/>
    </fixed>
    <fixed name="drive"><joint joint="j2" coef="0.5"/><joint joint="j3" coef="2"/></fixed>
  </tendon>
  <actuator><motor tendon="drive" gear="2" ctrlrange="-1 1"/><motor joint="j1"/></actuator>
</mujoco>"""

# servos: a position actuator with damping, a velocity actuator, a motor clipped by forcerange
SERVO = """<mujoco model="servo">
  <option timestep="0.002"/>
  <worldbody>
    <body name="l1" pos="0 0 2">
      <joint name="j1" type="hinge" axis="0 1 0"/>
      <geom type="capsule" fromto="0 0 0 0.3 0 -0.3" size="0.03"/>
      <body name="l2" pos="0.3 0 -0.3">
        <joint name="j2" type="hinge" axis="0 1 0.2"/>
        <geom type="capsule" fromto="0 0 0 0 0.1 -0.4" size="0.03"/>
        <body name="l3" pos="0 0.1 -0.4">
          <joint name="j3" type="slide" axis="1 0 0"/>
          <geom type="sphere" size="0.06" pos="0 0 -0.2"/>
        </body>
      </body>
    </body>
  </worldbody>
  <actuator>
    <position joint="j1" kp="5" kv="0.3" gear="1.5" ctrlrange="-1 1"/>
    <velocity joint="j2" kv="0.4" ctrlrange="-2 2"/>
    <motor joint="j3" gear="2" ctrlrange="-1 1" forcerange="-0.3 0.5"/>
  </actuator>
</mujoco>"""

# a spatial tendon through sites on the world, two links and a slider, with a spring outside
# its dead band and a damper (a hinge chain and a slide, so every segment moves differently)
SPATIAL = """<mujoco model="spatial">
  <option timestep="0.002"/>
  <worldbody>
    <site name="anchor" pos="0.4 0.1 2.3"/>
    <body name="l1" pos="0 0 2">
      <joint name="j1" type="hinge" axis="0 1 0" damping="0.05"/>
      <geom type="capsule" fromto="0 0 0 0.3 0 -0.3" size="0.03"/>
      <site name="s1" pos="0.2 0.05 -0.2"/>
      <body name="l2" pos="0.3 0 -0.3">
        <joint name="j2" type="hinge" axis="0 1 0.2"/>
        <geom type="capsule" fromto="0 0 0 0 0.1 -0.4" size="0.03"/>
        <site name="s2" pos="0 0.08 -0.3"/>
        <body name="l3" pos="0 0.1 -0.4">
          <joint name="j3" type="slide" axis="1 0 0"/>
          <geom type="sphere" size="0.06" pos="0 0 -0.2"/>
          <site name="s3" pos="0.05 0 -0.2"/>
        </body>
      </body>
    </body>
  </worldbody>
  <tendon>
    <spatial name="cable" stiffness="30" damping="0.4" springlength="0.6 0.9">
      <site site="anchor"/><site site="s1"/><site site="s2"/><site site="s3"/>
    </spatial>
    <spatial name="loop" stiffness="5"><site site="s3"/><site site="s1"/></spatial>
  </tendon>
  <actuator><motor joint="j1" ctrlrange="-1 1"/><motor joint="j3" ctrlrange="-1 1"/></actuator>
</mujoco>"""

# a branching tree with contact: a free torso with two legs (one with two joints on one body), a
# second root under the world, fluid forces, and a fixed tendon tying the legs across the tree
# (the adjoint's sweeps on one dof's tau skip the bodies outside its subtree and ancestors)
BRANCH = """<mujoco model="branch">
  <option timestep="0.002" density="1.2" viscosity="0.3"/>
  <worldbody>
    <geom type="plane" size="5 5 0.1"/>
    <body name="torso" pos="0 0 0.3" euler="5 10 0">
      <freejoint name="root"/>
      <geom type="box" size="0.2 0.1 0.05"/>
      <body name="lleg" pos="0.2 0.1 0">
        <joint name="lhip" type="hinge" axis="0 1 0" range="-0.5 0.5" damping="0.1"/>
        <geom type="capsule" fromto="0 0 0 0 0 -0.2" size="0.04"/>
        <body name="lfoot" pos="0 0 -0.2">
          <joint name="lknee" type="hinge" axis="1 0 0" range="-0.3 0.6"/>
          <geom type="sphere" size="0.05" pos="0 0 -0.1"/>
        </body>
      </body>
      <body name="rleg" pos="-0.2 -0.1 0">
        <joint name="rhip" type="hinge" axis="0 1 0" range="-0.5 0.5"/>
        <joint name="rslide" type="slide" axis="0 0 1" range="-0.1 0.1"/>
        <geom type="capsule" fromto="0 0 0 0 0 -0.25" size="0.04"/>
      </body>
    </body>
    <body name="arm" pos="1 0 1">
      <joint name="shoulder" type="hinge" axis="0 1 0"/>
      <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.03"/>
    </body>
  </worldbody>
  <tendon>
    <fixed name="couple" stiffness="3" damping="0.2"><joint joint="lhip" coef="1"/><joint joint="rhip" coef="-1"/></fixed>
  </tendon>
  <actuator>
    <motor joint="lhip" gear="2"/><motor joint="lknee"/><motor joint="rhip" gear="2"/><motor joint="rslide"/>
  </actuator>
</mujoco>"""
