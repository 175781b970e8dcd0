"""The house rules that `make lint`'s tools do not check: sizes and docstrings."""

import ast
import pathlib

import asgilook

PACKAGE = pathlib.Path(asgilook.__file__).parent
MODULES = sorted(PACKAGE.rglob('*.py'))
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def test_the_package_is_found():
    assert len(MODULES) > 50


def test_no_module_is_over_600_lines():
    long = {
        str(path.relative_to(PACKAGE)): lines
        for path in MODULES
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_function_is_over_80_lines():
    long = {}
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f'{path.relative_to(PACKAGE)}:{node.name}'] = lines
    assert long == {}


def test_every_package_says_what_lives_in_it():
    packages = [path for path in MODULES if path.name == '__init__.py']
    assert len(packages) >= 6
    silent = [
        str(path.relative_to(PACKAGE))
        for path in packages
        if not ast.get_docstring(ast.parse(path.read_text()))
    ]
    assert silent == []
