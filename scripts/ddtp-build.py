#!/usr/bin/python3
"""ddtp-build.py: builds the ddtp-de task (data/ddtp-de/README.md): Debian package
synopses in English -> their German translations from the Debian Description Translation
Project (DDTP), joined on Description-md5. Standard library only; scripts/ddtp-build.sh
fetches the indices with apt-get and calls this.

Usage: ddtp-build.py TRANSLATION_EN TRANSLATION_DE PACKAGES OUT_DIR
"""
import hashlib
import json
import os
import sys

FILES = ["labeled", "unlabeled", "unlabeled-gold", "dev", "test"]


def records(path):
    """Each deb822 record as a dict: field -> list of lines (first value, then continuations)."""
    rec, last = {}, None
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line == "":
                if rec:
                    yield rec
                rec, last = {}, None
                continue
            if line[:1] in (" ", "\t"):
                if last is not None:
                    rec[last].append(line)
                continue
            name, _, value = line.partition(":")
            last = name
            rec[name] = [value.strip()]
    if rec:
        yield rec


def synopses(path, field):
    """Description-md5 -> (package, synopsis) for every record carrying field."""
    out = {}
    for rec in records(path):
        if "Description-md5" in rec and field in rec and "Package" in rec:
            out.setdefault(rec["Description-md5"][0], (rec["Package"][0], rec[field][0]))
    return out


def source_of(packages):
    out = {}
    for rec in records(packages):
        pkg = rec.get("Package", [""])[0]
        if pkg and pkg not in out:
            out[pkg] = rec["Source"][0].split()[0] if "Source" in rec else pkg
    return out


def bucket(text, mod):
    return int(hashlib.sha256(text.encode("utf-8", errors="surrogateescape")).hexdigest()[:12], 16) % mod


def main(argv):
    if len(argv) != 5:
        sys.exit(__doc__.strip().splitlines()[-1])
    en = synopses(argv[1], "Description-en")
    de = synopses(argv[2], "Description-de")
    src = source_of(argv[3])
    pairs, seen = [], set()
    for md5, (pkg, german) in sorted(de.items(), key=lambda kv: kv[1][0]):
        if md5 not in en:
            continue
        english = en[md5][1]
        # a translation equal to its source, or one-word synopses, teach nothing
        if english in seen or english == german or len(english.split()) < 2 or len(german.split()) < 2:
            continue
        seen.add(english)
        pairs.append((pkg, english, german))
    files = {name: [] for name in FILES}
    for pkg, english, german in pairs:
        # split by source package, so that a family of binaries never straddles two files
        h = bucket(src.get(pkg, pkg), 100)
        row = {"id": pkg, "source": english, "target": german}
        if h < 8:
            files["test"].append(row)
        elif h < 16:
            files["dev"].append(row)
        elif bucket(pkg, 100) < 35:
            files["labeled"].append(row)
        else:
            files["unlabeled-gold"].append(row)
            files["unlabeled"].append({"id": pkg, "source": english})
    os.makedirs(argv[4], exist_ok=True)
    for name in FILES:
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in files[name])
        with open(os.path.join(argv[4], name + ".jsonl"), "wb") as f:
            f.write(data.encode("utf-8", errors="surrogateescape"))
    print("ddtp-build: %d English synopses, %d German, %d pairs: %s" % (
        len(en), len(de), len(pairs), ", ".join("%s %d" % (n, len(files[n])) for n in FILES)))


if __name__ == "__main__":
    main(sys.argv)
