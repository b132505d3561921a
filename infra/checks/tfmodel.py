"""Reads the Terraform under infra/terraform with python-hcl2 (no providers, no
`terraform init`) into plain dicts the checks can walk."""

import glob
import os
import re

import hcl2

REF = re.compile(r"^\$\{(.*)\}$")


def unq(value):
    """python-hcl2 keeps string quotes (`"\"x\""`) and wraps expressions in `${}`."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1]
    return value


def expr(value):
    """The expression inside `${...}`, or None for a literal."""
    if isinstance(value, str):
        m = REF.match(value)
        if m:
            return m.group(1)
    return None


def clean(obj):
    """Drop the parser's bookkeeping keys (__is_block__, __comments__) and unquote keys."""
    if isinstance(obj, dict):
        return {unq(k): clean(v) for k, v in obj.items() if not k.startswith("__")}
    if isinstance(obj, list):
        return [clean(v) for v in obj]
    return obj


class Module:
    """All blocks of the .tf files of one directory."""

    def __init__(self, path):
        self.path = path
        self.files = sorted(glob.glob(os.path.join(path, "*.tf")))
        self.variables = {}
        self.outputs = {}
        self.locals = {}
        self.resources = []  # (type, name, body)
        self.data = []
        self.modules = {}
        self.providers = []
        self.terraform = []
        self.moved = []  # (from, to) addresses of `moved` blocks
        for f in self.files:
            with open(f) as fh:
                doc = clean(hcl2.load(fh))
            for block in doc.get("variable", []):
                self.variables.update(block)
            for block in doc.get("output", []):
                self.outputs.update(block)
            for block in doc.get("locals", []):
                self.locals.update(block)
            for block in doc.get("resource", []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        self.resources.append((rtype, name, body))
            for block in doc.get("data", []):
                for dtype, named in block.items():
                    for name, body in named.items():
                        self.data.append((dtype, name, body))
            for block in doc.get("module", []):
                self.modules.update(block)
            self.providers += doc.get("provider", [])
            self.terraform += doc.get("terraform", [])
            for block in doc.get("moved", []):
                self.moved.append((expr(block.get("from")), expr(block.get("to"))))

    def resolve(self, value):
        """A literal string, following one `${local.x}` indirection; None if dynamic."""
        e = expr(value)
        if e is None:
            return unq(value) if isinstance(value, (str, int)) else None
        m = re.fullmatch(r"local\.(\w+)", e)
        if m and m.group(1) in self.locals:
            return self.resolve(self.locals[m.group(1)])
        return None

    def text(self):
        out = []
        for f in self.files:
            with open(f) as fh:
                out.append(fh.read())
        return "\n".join(out)


_CACHE = {}


def module(path):
    """A parsed Module, parsed once per run (python-hcl2 is not fast)."""
    path = os.path.normpath(path)
    if path not in _CACHE:
        _CACHE[path] = Module(path)
    return _CACHE[path]


def load_tfvars(path):
    with open(path) as fh:
        return clean(hcl2.load(fh))
