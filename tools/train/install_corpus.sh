#!/bin/sh
# The Debian packages the default model's corpus comes from (tools/train/prepare_data.py).
# Not needed to build or test epserve; only to retrain the model.
set -e
apt-get install -y --no-install-recommends python3.11-doc wordnet-base
