"""Checks a .pt file that epserve wrote, without torch, the way torch.load(weights_only=True) reads
it, and compares it with the JSON dump of the same record (recorder_dump_test.cpp runs this).

    python3 torch_archive_check.py DUMP.pt DUMP.json     prints "ok" or fails

The zip: every record stored (no compression), its CRC right, its data at a 64-byte boundary, the
records torch reads (data.pkl, byteorder, version, data/<key>) in one folder. The pickle: protocol
2, only the opcodes and globals torch's weights_only unpickler allows, tensors rebuilt from the
storages' bytes (contiguous, the byte counts matching numel). The value then equals the JSON."""

import collections
import io
import json
import pickle
import pickletools
import struct
import sys
import zipfile

ALLOWED_OPCODES = {
    "PROTO", "STOP", "GLOBAL", "REDUCE", "MARK", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
    "EMPTY_TUPLE", "EMPTY_LIST", "EMPTY_DICT", "APPENDS", "APPEND", "SETITEMS", "SETITEM",
    "BINPERSID", "BININT", "BININT1", "BININT2", "LONG1", "BINFLOAT", "BINUNICODE", "NONE",
    "NEWTRUE", "NEWFALSE", "BINPUT", "BINGET", "LONG_BINPUT", "LONG_BINGET",
}
STORAGES = {"IntStorage": ("<i", 4), "LongStorage": ("<q", 8), "FloatStorage": ("<f", 4)}


def check_zip(path):
    z = zipfile.ZipFile(path)
    assert z.testzip() is None, "a record's CRC is wrong"
    raw = open(path, "rb").read()
    folders = set()
    for info in z.infolist():
        assert info.compress_type == zipfile.ZIP_STORED, info.filename
        folders.add(info.filename.split("/")[0])
        # The local header's own name and extra lengths say where the data starts.
        name_len, extra_len = struct.unpack_from("<HH", raw, info.header_offset + 26)
        start = info.header_offset + 30 + name_len + extra_len
        assert start % 64 == 0, f"{info.filename}: data at {start}, not 64-byte aligned"
    assert len(folders) == 1, folders
    folder = folders.pop()
    names = set(z.namelist())
    for record in ("data.pkl", "byteorder", "version"):
        assert f"{folder}/{record}" in names, record
    assert z.read(f"{folder}/byteorder") == b"little"
    assert z.read(f"{folder}/version") == b"3\n"
    return z, folder


class Unpickler(pickle.Unpickler):
    def __init__(self, data, z, folder):
        super().__init__(io.BytesIO(data))
        self.z, self.folder = z, folder

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return rebuild_tensor
        if module == "torch" and name in STORAGES:
            return name
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")

    def persistent_load(self, pid):
        kind, storage, key, location, numel = pid
        assert kind == "storage" and location == "cpu", pid
        fmt, size = STORAGES[storage]
        data = self.z.read(f"{self.folder}/data/{key}")
        assert len(data) == numel * size, (key, len(data), numel)
        return [v for (v,) in struct.iter_unpack(fmt, data)]


def rebuild_tensor(storage, offset, shape, stride, requires_grad, hooks):
    assert offset == 0 and requires_grad is False and not hooks
    expected, n = [], 1
    for d in reversed(shape):
        expected.insert(0, n)
        n *= d
    assert list(stride) == expected, (shape, stride)
    assert len(storage) == n

    def nest(flat, dims):
        if not dims:
            return flat[0]
        step = len(flat) // dims[0] if dims[0] else 0
        return [nest(flat[i * step:(i + 1) * step], dims[1:]) for i in range(dims[0])]
    return nest(storage, list(shape)) if shape else storage[0]


def main(pt_path, json_path):
    z, folder = check_zip(pt_path)
    data = z.read(f"{folder}/data.pkl")
    ops = [op.name for op, _, _ in pickletools.genops(data)]
    assert ops[0] == "PROTO" and ops[-1] == "STOP", ops[:2]
    assert set(ops) <= ALLOWED_OPCODES, set(ops) - ALLOWED_OPCODES
    value = Unpickler(data, z, folder).load()
    expected = json.load(open(json_path))
    assert value == expected, "the .pt and the .json differ"
    assert list(value) == list(expected), "keys in another order"
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
