"""The prototype's correctness test in moelat's names: batch vs per-cell."""
import numpy as np

import moelat
from conftest import DIMS, random_input, random_states


def test_batch_matches_percell_over_steps(make_lattice, rng):
    seed = int(rng.integers(1, 2**31))
    a = make_lattice(seed=seed)
    b = make_lattice(seed=seed)
    moelat.upgrade_lattice_to_batch(b)
    assert b.batch_enabled and not a.batch_enabled
    start = random_states(rng, a)
    a.states = start
    b.states = start.reshape(DIMS[2], DIMS[1], DIMS[0], -1)  # (Z, Y, X, S) is accepted too
    for step in range(4):
        ext = random_input(rng, a)
        sa = a.forward(ext)
        sb = b.forward(ext)
        assert sa.shape == (a.num_cells, a.state_size) and sa.dtype == np.float32
        diff = np.abs(sa - sb).max() / max(1.0, np.abs(sa).max())
        assert diff < 1e-5, f"step {step}: batch and per-cell differ by {diff}"
        assert not np.array_equal(sa, start)
    np.testing.assert_allclose(a.outputs, sa.reshape(DIMS[2], -1, a.state_size)[-1], rtol=0, atol=0)
    assert a.steps_done == b.steps_done == 4


def test_external_input_changes_the_input_face_only_first(make_lattice, rng):
    lat = make_lattice()
    start = random_states(rng, lat)
    lat.states = start
    without = lat.forward(None)
    lat.states = start
    with_input = lat.forward(random_input(rng, lat))
    X, Y, _ = lat.dimensions
    face = X * Y
    assert not np.allclose(without[:face], with_input[:face])
    # One step reaches at most the halo of the face, never the last plane.
    np.testing.assert_array_equal(without[-face:], with_input[-face:])


def test_mode_switching_and_factory(make_lattice, rng):
    def factory(dims, moe):
        return moelat.create_batch_optimized_spatial_optimizer(dims, moe, enable_batch=True, batch_threshold=4)

    lat = make_lattice(spatial_optimizer_factory=factory)
    assert lat.batch_enabled and lat.spatial_optimizer.batch_threshold == 4
    lat.set_batch_enabled(False)
    assert lat.mode == "percell"
    lat.forward(steps=1)
    lat.set_batch_enabled(True)
    lat.forward(steps=1)
    perf = lat.get_batch_performance()
    assert perf["batch_chunks"] >= 1 and perf["percell_chunks"] >= 1
    assert perf["steps"] == 2


def test_checkpoint_resume_bit_exact(make_lattice, rng, tmp_path):
    seed = int(rng.integers(1, 2**31))
    a = make_lattice(seed=seed)
    a.states = random_states(rng, a)
    a.forward(random_input(rng, a), steps=1)
    a.save_checkpoint(tmp_path / "ck")
    ref = a.forward(None, steps=2)
    b = make_lattice(seed=seed)
    b.resume(tmp_path / "ck")
    assert b.steps_done == 1
    np.testing.assert_array_equal(b.forward(None, steps=2), ref)


def test_config_dict_and_file(make_lattice, rng, tmp_path):
    import json

    seed = int(rng.integers(1, 2**31))
    # (make_lattice passes a seed option, which overrides a config's seed.)
    a = make_lattice(config={"radius_ratio": 0.35}, seed=seed)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"radius_ratio": 0.35}))
    b = make_lattice(config=str(path), seed=seed)
    c = make_lattice(seed=seed)
    np.testing.assert_array_equal(a.forward(), b.forward())
    assert not np.array_equal(a.states, c.forward())  # the radius changed the model
