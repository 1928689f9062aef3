"""Security basics: parameters cannot reach outside the project or carry secrets."""
from conftest import mlops, write_nb


def test_path_parameter_cannot_escape_the_project(tmp_path):
    (tmp_path / 'data').mkdir()
    (tmp_path / 'data' / 'in.txt').write_text('ok')
    write_nb(tmp_path / 'read.ipynb', "path = 'data/in.txt'", 'import mlops_nb as mn\nprint(mn.input_path(path).read_text())')
    (tmp_path / 'mlops.yaml').write_text('name: sec\nsteps:\n  read: {notebook: read.ipynb}\n')
    assert mlops(tmp_path, 'run').returncode == 0
    r = mlops(tmp_path, 'run', '-p', 'path=../../etc/passwd')
    assert r.returncode == 1
    assert "MlopsError: path '../../etc/passwd' leaves the project folder" in r.stderr
    assert 'root:' not in r.stderr  # nothing of the file was read


def test_secret_looking_parameters_are_refused(tmp_path):
    write_nb(tmp_path / 'x.ipynb', "api_token = ''", 'x = 1')
    (tmp_path / 'mlops.yaml').write_text('name: sec\nsteps:\n  x: {notebook: x.ipynb}\n')
    r = mlops(tmp_path, 'run', '-p', 'api_token=hunter2-secret')
    assert r.returncode == 1
    assert "parameter 'api_token' looks like a secret: read it from the environment instead" in r.stderr
    assert not (tmp_path / 'runs').exists()  # never written into an executed notebook
