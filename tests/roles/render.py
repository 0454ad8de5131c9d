#!/usr/bin/env python3
"""Stand-in renderer for ezk's roles/ and playbooks/, used by validate-templates.sh until ezk's
own `ezk render` lands (the lead replaces it then).

It follows docs/CONTRACTS (task syntax, module args, precedence role defaults < config <
[all:vars] < host vars < -e) and renders with minijinja -- the engine and version ezk embeds,
through its Python binding -- configured like src/template (strict undefined, trim_blocks,
keep_trailing_newline, Ansible's `bool`). Without the binding it falls back to Jinja2.

For every host of every play of a step it writes, under OUT/<step>/<host>/:
  - each file a template/copy task would install, at its destination path;
  - _actions.json: every task with its module and rendered args, skipped ones marked.
Any contract violation (unknown module/arg, two modules in one task, missing template or file,
undefined variable, Jinja error) exits 1 naming the role file, task and host.

usage: render.py INVENTORY.yml OUT_DIR STEP... [-e key=value ...]
"""

import json
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODULES = {
    "template": ({"src", "dest"}, {"mode", "owner", "group", "secret"}),
    "copy": ({"dest"}, {"content", "src", "mode", "owner", "group", "secret"}),
    "file": ({"path"}, {"state", "mode", "src"}),
    "binary": ({"name", "dest"}, {"mode"}),
    "cert": ({"name", "dest"}, {"key", "ca"}),
    "kubeconfig": ({"name", "dest"}, set()),
    "sysctl": ({"file", "entries"}, set()),
    "modprobe": ({"file", "modules"}, set()),
    "package": ({"names"}, set()),
    "systemd": ({"unit"}, {"enabled", "state"}),
    "command": ({"cmd"}, {"creates", "unless"}),
    "wait_for": (set(), {"tcp", "command", "timeout", "diagnose"}),
}
COMMON_KEYS = {"name", "when", "loop", "notify"}


class Fail(Exception):
    pass


def to_bool(v):
    if isinstance(v, str):
        s = v.strip().lower()
        if s in ("yes", "true", "on", "1", "y"):
            return True
        if s in ("no", "false", "off", "0", "n", ""):
            return False
        raise ValueError(f"cannot interpret {v!r} as a boolean")
    return bool(v)


def make_env():
    try:
        import minijinja

        env = minijinja.Environment(
            undefined_behavior="strict", trim_blocks=True, keep_trailing_newline=True
        )
        env.add_filter("bool", to_bool)
        return "minijinja", env.render_str, env.eval_expr
    except ImportError:
        import jinja2

        env = jinja2.Environment(
            undefined=jinja2.StrictUndefined, trim_blocks=True, keep_trailing_newline=True
        )
        env.filters["bool"] = to_bool

        def render(src, **ctx):
            return env.from_string(src).render(**ctx)

        def evaluate(expr, **ctx):
            return env.compile_expression(expr)(**ctx)

        return "jinja2", render, evaluate


ENGINE, RENDER, EVAL = make_env()
WHOLE_EXPR = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.S)


def is_template(s):
    return isinstance(s, str) and ("{{" in s or "{%" in s or "{#" in s)


def render_value(v, ctx):
    """Render a YAML value; a string that is one whole `{{ expr }}` keeps the expression's type
    (a list stays a list), as Ansible does."""
    if isinstance(v, dict):
        return {k: render_value(x, ctx) for k, x in v.items()}
    if isinstance(v, list):
        return [render_value(x, ctx) for x in v]
    if is_template(v):
        m = WHOLE_EXPR.match(v)
        if m and "{{" not in m.group(1) and "{%" not in v:
            return EVAL(m.group(1), **ctx)
        return RENDER(v, **ctx)
    return v


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def resolve(raw, base_ctx):
    """Evaluate templated values lazily by repeated passes (values may refer to each other)."""
    vals = dict(raw)
    for _ in range(10):
        changed = False
        for k, v in list(vals.items()):
            if is_template(v) or (isinstance(v, (list, dict)) and is_template(json.dumps(v))):
                try:
                    nv = render_value(v, {**base_ctx, **vals})
                except Exception:
                    continue  # refers to something not resolved yet; next pass
                if nv != v:
                    vals[k], changed = nv, True
        if not changed:
            break
    return vals


def host_vars(inv, host, defaults, extra):
    raw = {**defaults, **inv.get("config", {}), **inv.get("all", {}),
           **(inv.get("hosts", {}).get(host) or {}), **extra}
    return resolve(raw, {"inventory_hostname": host, "groups": inv["groups"]})


def groups_of(inv):
    groups = {k: list(v or []) for k, v in inv["groups"].items()}
    seen = []
    for members in groups.values():
        seen += [h for h in members if h not in seen]
    groups["all"] = seen
    return groups


def play_hosts(play, groups):
    names = play["hosts"] if isinstance(play["hosts"], list) else [play["hosts"]]
    out = []
    for g in names:
        if g not in groups:
            raise Fail(f"play names unknown group {g!r}")
        out += [h for h in groups[g] if h not in out]
    return out


def check_task(task, where):
    if not isinstance(task, dict) or "name" not in task:
        raise Fail(f"{where}: a task needs a `name`")
    mods = [k for k in task if k not in COMMON_KEYS]
    if len(mods) != 1 or mods[0] not in MODULES:
        raise Fail(f"{where}: exactly one module key expected, found {mods}")
    mod = mods[0]
    required, optional = MODULES[mod]
    args = task[mod]
    if not isinstance(args, dict):
        raise Fail(f"{where}: `{mod}` args must be a map")
    unknown = set(args) - required - optional
    missing = required - set(args)
    if unknown or missing:
        raise Fail(f"{where}: `{mod}` unknown args {sorted(unknown)}, missing {sorted(missing)}")
    if mod == "copy" and ("src" in args) == ("content" in args):
        raise Fail(f"{where}: copy needs exactly one of src/content")
    if mod == "wait_for" and ("tcp" in args) == ("command" in args):
        raise Fail(f"{where}: wait_for needs exactly one of tcp/command")
    return mod


def run_role(role, host, hv, ctx, out_dir):
    rdir = os.path.join(ROOT, "roles", role)
    tasks = load_yaml(os.path.join(rdir, "tasks.yml")) or []
    actions = []
    for i, task in enumerate(tasks):
        where = f"roles/{role}/tasks.yml task {i + 1} ({task.get('name', '?')}) on {host}"
        mod = check_task(task, where)
        try:
            items = [None]
            if "loop" in task:
                items = render_value(task["loop"], ctx)
                if not isinstance(items, list):
                    raise Fail(f"{where}: loop did not give a list: {items!r}")
            for item in items:
                ictx = dict(ctx, item=item) if item is not None else ctx
                when = task.get("when")
                if when is not None and not EVAL(str(when), **ictx):
                    actions.append({"task": task["name"], "module": mod, "skipped": True})
                    continue
                args = render_value(task[mod], ictx)
                rec = {"task": task["name"], "module": mod, "args": args,
                       "notify": task.get("notify", [])}
                if mod in ("template", "copy"):
                    dest = os.path.join(out_dir, args["dest"].lstrip("/"))
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    if mod == "template":
                        with open(os.path.join(rdir, "templates", args["src"])) as f:
                            text = RENDER(f.read(), **ictx)
                    elif "src" in args:
                        with open(os.path.join(rdir, "files", args["src"])) as f:
                            text = f.read()
                    else:
                        text = args["content"]
                    with open(dest, "w") as f:
                        f.write(text)
                    if "mode" in args:
                        os.chmod(dest, int(str(args["mode"]), 8))
                actions.append(rec)
        except Fail:
            raise
        except Exception as e:  # Jinja and file errors, named by their task
            raise Fail(f"{where}: {type(e).__name__}: {e}") from None
    return actions


def check_dag():
    """Every `depends` names an existing role and the graph has no cycle (as the engine checks)."""
    rroot = os.path.join(ROOT, "roles")
    deps = {}
    for role in sorted(os.listdir(rroot)):
        if not os.path.isfile(os.path.join(rroot, role, "tasks.yml")):
            continue
        meta = os.path.join(rroot, role, "meta.yml")
        deps[role] = (load_yaml(meta) or {}).get("depends", []) if os.path.exists(meta) else []
    for role, ds in deps.items():
        for d in ds:
            if d not in deps:
                raise Fail(f"roles/{role}/meta.yml: depends on missing role {d!r}")
    state = {}

    def visit(r, path):
        if state.get(r) == "done":
            return
        if state.get(r) == "open":
            raise Fail(f"role dependency cycle: {' -> '.join(path + [r])}")
        state[r] = "open"
        for d in deps[r]:
            visit(d, path + [r])
        state[r] = "done"

    for r in deps:
        visit(r, [])
    return deps


def check_import_playbooks():
    pdir = os.path.join(ROOT, "playbooks")
    steps = {p.split(".")[0] for p in os.listdir(pdir)}
    for p in sorted(os.listdir(pdir)):
        doc = load_yaml(os.path.join(pdir, p))
        if isinstance(doc, dict):
            for step in doc.get("import", []):
                if (f"{step:02d}" if isinstance(step, int) else str(step)) not in steps:
                    raise Fail(f"playbooks/{p}: imports step {step!r}, which has no playbook")


def main(argv):
    extra, pos = {}, []
    it = iter(argv)
    for a in it:
        if a == "-e":
            k, _, v = next(it).partition("=")
            extra[k] = yaml.safe_load(v) if v else ""
        else:
            pos.append(a)
    if len(pos) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    check_dag()
    check_import_playbooks()
    inv = load_yaml(pos[0])
    out_root, steps = pos[1], pos[2:]
    groups = groups_of(inv)
    inv["groups"] = groups
    for step in steps:
        pb = [p for p in os.listdir(os.path.join(ROOT, "playbooks")) if p.startswith(step + ".")]
        if len(pb) != 1:
            raise Fail(f"step {step}: expected one playbooks/{step}.*.yml, found {pb}")
        plays = load_yaml(os.path.join(ROOT, "playbooks", pb[0]))
        per_host = {}
        for play in plays:
            for entry in play["roles"]:
                role, when = (entry, None) if isinstance(entry, str) else (entry["role"], entry.get("when"))
                rdir = os.path.join(ROOT, "roles", role)
                defaults = load_yaml(os.path.join(rdir, "defaults.yml")) or {} \
                    if os.path.exists(os.path.join(rdir, "defaults.yml")) else {}
                hostvars = {h: host_vars(inv, h, defaults, extra) for h in groups["all"]}
                for host in play_hosts(play, groups):
                    ctx = {**hostvars[host], "inventory_hostname": host, "groups": groups,
                           "hostvars": hostvars}
                    if when is not None and not EVAL(when, **ctx):
                        continue
                    out_dir = os.path.join(out_root, step, host)
                    per_host.setdefault(host, []).append(
                        {"role": role, "tasks": run_role(role, host, hostvars[host], ctx, out_dir)})
        for host, roles in per_host.items():
            d = os.path.join(out_root, step, host)
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "_actions.json"), "w") as f:
                json.dump(roles, f, indent=1, default=str)
        print(f"step {step}: rendered with {ENGINE} for {len(per_host)} host(s)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Fail as e:
        print(f"render.py: {e}", file=sys.stderr)
        sys.exit(1)
