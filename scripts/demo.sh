#!/bin/sh
# make demo: the main job on the bundled data. Until the training, generation and
# evaluation commands land (issues 3-5), it says so.
set -eu
echo "tutor demo: not yet: the engine is built (make test exercises it); training, generation"
echo "and evaluation on data/debdesc arrive with the next issues."
