"""Packaging reads everything from settings.ini (the nbdev 2 convention): one place for metadata and dependencies."""
import shlex
from configparser import ConfigParser
from pathlib import Path

import setuptools

# The JupyterLab extension: its built frontend (committed in mlops_nb/labextension/, built from labextension/) where
# JupyterLab looks for prebuilt extensions, and the server extension enabled in Jupyter's configuration.
labext = Path(__file__).parent / 'mlops_nb' / 'labextension'
data_files = [('etc/jupyter/jupyter_server_config.d', ['jupyter-config/jupyter_server_config.d/mlops_nb.json']),
              *((f'share/jupyter/labextensions/mlops-nb-lab/{f.parent.relative_to(labext).as_posix()}'.rstrip('/.'),
                 [f.relative_to(Path(__file__).parent).as_posix()]) for f in sorted(labext.rglob('*')) if f.is_file())]

cfg = ConfigParser(delimiters=['='])
cfg.read(Path(__file__).parent / 'settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    long_description=Path(__file__).with_name('README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    author=cfg['author'],
    author_email=cfg['author_email'],
    url=cfg['git_url'],
    license='Apache-2.0',
    keywords=cfg['keywords'],
    classifiers=[
        'Development Status :: 3 - Alpha',
        'Intended Audience :: Developers',
        'Programming Language :: Python :: 3.11',
    ],
    # `mlops-nb init` copies examples/weather, shipped inside the package as `mlops_nb_examples`.
    packages=[*setuptools.find_packages(include=[cfg['lib_path'], cfg['lib_path'] + '.*']), 'mlops_nb_examples'],
    package_dir={'mlops_nb_examples': 'examples'},
    package_data={'mlops_nb': ['labextension/*', 'labextension/static/*'],
                  'mlops_nb_examples': ['weather/*.yaml', 'weather/*.txt', 'weather/.gitignore', 'weather/notebooks/*',
                                        'weather/.github/workflows/*', 'weather/.github/actions/*/*']},
    data_files=data_files,
    install_requires=shlex.split(cfg.get('requirements', '')),
    extras_require={'dev': shlex.split(cfg.get('dev_requirements', ''))},
    python_requires='>=' + cfg['min_python'],
    zip_safe=False,
    entry_points={
        'console_scripts': cfg.get('console_scripts', '').split(),
        'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"],
    },
)
