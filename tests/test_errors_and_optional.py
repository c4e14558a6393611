import subprocess
import sys

import pytest

import workbench
from workbench._optional import MissingExtraError, available, require
from workbench.errors import (
    BackendUnavailable,
    CapacityError,
    InputError,
    NotFoundError,
    WaitTimeout,
    WorkbenchError,
)


def test_error_family_and_http_mapping() -> None:
    assert issubclass(WaitTimeout, WorkbenchError) and issubclass(WaitTimeout, TimeoutError)
    assert issubclass(InputError, ValueError) and InputError.http_status == 400
    assert InputError.code == "VALIDATION_ERROR"
    assert NotFoundError.http_status == 404 and str(NotFoundError("no study 'x'")) == "no study 'x'"
    assert issubclass(BackendUnavailable, ConnectionError)
    err = CapacityError("too big", details={"nbytes": 5})
    assert err.details == {"nbytes": 5} and err.message == "too big"


def test_require_names_the_extra() -> None:
    assert require("json").dumps([]) == "[]"
    with pytest.raises(MissingExtraError, match=r"workbench\[service\]"):
        require("pydantic.definitely_not_a_module", purpose="testing")
    assert available("json") and not available("no_such_module_xyz")


def test_import_workbench_is_light() -> None:
    code = (
        "import sys, workbench; heavy = {'numpy', 'numba', 'torch', 'pandas', 'scipy', "
        "'plotly', 'aiohttp', 'redis'} & set(sys.modules); print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_version_is_a_string() -> None:
    assert workbench.__version__.count(".") == 2
