"""Generates the workspace's genrule targets, so the repository stays small."""

TARGETS = 320

def genrules(count = TARGETS):
    """`count` genrules in a tree: each target reads its parent's output, so analysis has a real graph."""
    for i in range(count):
        parent = (i - 1) // 4
        native.genrule(
            name = "gen_%d" % i,
            srcs = [":gen_%d" % parent] if i > 0 else [],
            outs = ["gen_%d.txt" % i],
            cmd = ("cat $(SRCS) > $@ && " if i > 0 else "") + "echo %d >> $@" % i,
        )
    native.filegroup(name = "all", srcs = [":gen_%d" % i for i in range(count)])
