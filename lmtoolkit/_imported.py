"""The package's source files as they were when this process first imported lmtoolkit.

``lmtoolkit/__init__.py`` takes this snapshot before it imports any other module of the
package.  A Python process keeps the modules it imported, so a file whose stat no longer
matches the snapshot may hold other code than the code the process runs — and a module it
imports later, after the edit, would run the new code under the old one's name
(:func:`lmtoolkit.provenance.package_code` turns this into refusals).  Standard library and
``stat`` calls only, no file is read: ~1 ms (100 files) added to ``import lmtoolkit`` (~400 ms).
"""

from __future__ import annotations

import os
import stat

#: suffixes of the package's files that can change a result (the ones ``code_hash`` hashes)
CODE_SUFFIXES = (".py", ".c", ".h")

#: the package's directory, symlinks resolved
PACKAGE_DIR = os.path.dirname(os.path.realpath(__file__))


def source_stats(root: str = PACKAGE_DIR) -> dict[str, tuple[int, int, int, int]]:
    """Each source file under ``root`` (relative POSIX path, ``__pycache__`` left out, links to
    directories not followed) -> ``(size B, mtime ns, ctime ns, inode)``: an edit in place
    changes mtime and ctime, a file renamed over it (editors, git, rsync) its inode, and a
    copy that keeps the old mtime (``cp -p``, ``rsync -t``) still its ctime."""
    out: dict[str, tuple[int, int, int, int]] = {}
    todo = [("", root)]
    while todo:
        rel, folder = todo.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                if e.name != "__pycache__":
                    todo.append((f"{rel}{e.name}/", e.path))
            elif e.name.endswith(CODE_SUFFIXES):
                try:
                    st = e.stat()
                except OSError:  # (removed meanwhile, or a dangling link)
                    continue
                if stat.S_ISREG(st.st_mode):
                    out[rel + e.name] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    return out


#: :func:`source_stats` when this process first imported lmtoolkit
IMPORTED = source_stats()
