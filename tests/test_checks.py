from rlhf_lab import checks


def test_every_check_passes_here():
    results = checks.run_checks()
    assert [c.name for c in results][:2] == ["python", "torch"]
    assert all(c.ok for c in results), [c.line() for c in results if not c.ok]
    assert all(c.line().startswith("[OK]") for c in results)


def test_failures_say_how_to_fix(tmp_path):
    missing = checks.check_package("no_such_package_xyz")
    assert not missing.ok and missing.line().startswith("[FAIL]") and "make lab" in missing.line()
    data = checks.check_data(tmp_path)
    assert not data.ok and "raw/web_dump.txt" in data.detail and "make data" in data.fix
