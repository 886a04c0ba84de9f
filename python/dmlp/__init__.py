"""dmlp: networks trained by dmlp, in Python.

    import dmlp
    net = dmlp.Net("runs/x/best.h5")
    y = net.predict(x)            # x: (n, net.inputs) float32 or float64 -> (n, net.outputs)
    ens = dmlp.Ensemble(["runs/sweep/member-000/latest.h5", "runs/sweep/member-001/latest.h5"])
    mean, std = ens.predict(x)    # the members' mean and standard deviation (ddof 0)

A thin ctypes layer over libdmlp's inference interface (include/dmlp/infer.h): the outputs
are bit-identical to `dmlp predict` on the same rows; the network's input standardisation
is applied; a classifier returns class probabilities. No MPI is needed. predict releases
the GIL while it runs, so threads may share one Net (but close it only once no thread is
predicting with it).

The library is found in this order: $DMLP_LIBRARY (a path to libdmlp.so), a build tree
beside this package (../build/libdmlp.so, for use from a checkout), then the system's
library path (ctypes.util.find_library("dmlp"), e.g. after `cmake --install`).
"""
import ctypes
import ctypes.util
import os

import numpy as np

__all__ = ["Net", "Ensemble", "Error", "library_path"]
__version__ = "0.1.0"


class Error(RuntimeError):
    """A checkpoint that cannot be loaded, or a call the library refused; the message
    names the file or the argument."""


def library_path():
    """The libdmlp.so this package uses (see the module's documentation)."""
    env = os.environ.get("DMLP_LIBRARY")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    tree = os.path.join(here, "..", "..", "build", "libdmlp.so")
    if os.path.exists(tree):
        return os.path.normpath(tree)
    found = ctypes.util.find_library("dmlp")
    if found:
        return found
    raise Error("libdmlp.so not found: set DMLP_LIBRARY to its path, or install dmlp "
                "(cmake --install) where the loader finds it")


_lib = None


def _library():
    global _lib
    if _lib is None:
        lib = ctypes.CDLL(library_path())
        lib.dmlp_net_load.restype = ctypes.c_void_p
        lib.dmlp_net_load.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.dmlp_net_inputs.restype = ctypes.c_size_t
        lib.dmlp_net_inputs.argtypes = [ctypes.c_void_p]
        lib.dmlp_net_outputs.restype = ctypes.c_size_t
        lib.dmlp_net_outputs.argtypes = [ctypes.c_void_p]
        lib.dmlp_net_predict.restype = ctypes.c_int
        lib.dmlp_net_predict.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                         ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.dmlp_net_free.restype = None
        lib.dmlp_net_free.argtypes = [ctypes.c_void_p]
        lib.dmlp_ensemble_load.restype = ctypes.c_void_p
        lib.dmlp_ensemble_load.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_size_t,
                                           ctypes.c_char_p, ctypes.c_size_t]
        for name in ("members", "inputs", "outputs"):
            f = getattr(lib, "dmlp_ensemble_" + name)
            f.restype = ctypes.c_size_t
            f.argtypes = [ctypes.c_void_p]
        lib.dmlp_ensemble_predict.restype = ctypes.c_int
        lib.dmlp_ensemble_predict.argtypes = [ctypes.c_void_p, ctypes.c_size_t,
                                              ctypes.c_void_p, ctypes.c_void_p,
                                              ctypes.c_void_p, ctypes.c_char_p,
                                              ctypes.c_size_t]
        lib.dmlp_ensemble_free.restype = None
        lib.dmlp_ensemble_free.argtypes = [ctypes.c_void_p]
        _lib = lib
    return _lib


def _rows(x, inputs, what):
    """x as contiguous float32 rows of `inputs` values, and whether it was one row."""
    a = np.asarray(x)
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{what}: x must be float32 or float64, not {a.dtype}")
    single = a.ndim == 1
    a = a.reshape(1, -1) if single else a
    if a.ndim != 2 or a.shape[1] != inputs:
        raise ValueError(f"{what}: x has shape {np.shape(x)}, the net takes rows of "
                         f"{inputs} inputs: (n, {inputs})")
    return np.ascontiguousarray(a, dtype=np.float32), single


class _Owned:
    """What Net and Ensemble share: a library handle freed by close, by `with`, or with the
    object. _free names the library's function that frees it."""

    _free = None

    def close(self):
        """Frees the handle now (it is freed with the object otherwise)."""
        if getattr(self, "_handle", None) is not None:
            getattr(self._lib, self._free)(self._handle)
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


class Net(_Owned):
    """A trained network, loaded from a dmlp checkpoint (step-N.h5, latest.h5, best.h5)."""

    _free = "dmlp_net_free"

    def __init__(self, path):
        lib = _library()
        err = ctypes.create_string_buffer(1024)
        handle = lib.dmlp_net_load(os.fsencode(path), err, len(err))
        if not handle:
            raise Error(err.value.decode("utf-8", "replace"))
        self._lib, self._handle = lib, handle
        self.inputs = lib.dmlp_net_inputs(handle)
        self.outputs = lib.dmlp_net_outputs(handle)

    def predict(self, x):
        """The network on x, shape (n, inputs) or (inputs,), float32 or float64 (computed
        in float32, the network's precision); returns float32 of shape (n, outputs) or
        (outputs,)."""
        if self._handle is None:
            raise Error("predict: the net is closed")
        a, single = _rows(x, self.inputs, "predict")
        y = np.empty((a.shape[0], self.outputs), dtype=np.float32)
        err = ctypes.create_string_buffer(1024)
        if self._lib.dmlp_net_predict(self._handle, a.shape[0], a.ctypes.data,
                                      y.ctypes.data, err, len(err)):
            raise Error(err.value.decode("utf-8", "replace"))
        return y[0] if single else y

    def __repr__(self):
        return f"dmlp.Net(inputs={self.inputs}, outputs={self.outputs})"


class Ensemble(_Owned):
    """Several trained networks used as one (a sweep's members, say), as `dmlp predict`
    with several --checkpoint uses them: predict gives the members' mean and standard
    deviation (ddof 0), with the bits of /predictions and /std."""

    _free = "dmlp_ensemble_free"

    def __init__(self, paths):
        lib = _library()
        paths = [os.fsencode(p) for p in paths]
        arr = (ctypes.c_char_p * len(paths))(*paths)
        err = ctypes.create_string_buffer(1024)
        handle = lib.dmlp_ensemble_load(arr, len(paths), err, len(err))
        if not handle:
            raise Error(err.value.decode("utf-8", "replace"))
        self._lib, self._handle = lib, handle
        self.members = lib.dmlp_ensemble_members(handle)
        self.inputs = lib.dmlp_ensemble_inputs(handle)
        self.outputs = lib.dmlp_ensemble_outputs(handle)

    def predict(self, x):
        """(mean, std) of the members on x, shape (n, inputs) or (inputs,); float32 arrays
        of shape (n, outputs) or (outputs,)."""
        if self._handle is None:
            raise Error("predict: the ensemble is closed")
        a, single = _rows(x, self.inputs, "predict")
        mean = np.empty((a.shape[0], self.outputs), dtype=np.float32)
        std = np.empty_like(mean)
        err = ctypes.create_string_buffer(1024)
        if self._lib.dmlp_ensemble_predict(self._handle, a.shape[0], a.ctypes.data,
                                           mean.ctypes.data, std.ctypes.data, err, len(err)):
            raise Error(err.value.decode("utf-8", "replace"))
        return (mean[0], std[0]) if single else (mean, std)

    def __repr__(self):
        return (f"dmlp.Ensemble(members={self.members}, inputs={self.inputs}, "
                f"outputs={self.outputs})")
