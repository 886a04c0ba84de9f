#!/usr/bin/env bash
# The main job: installs what is missing (with Debian's Fashion-MNIST), builds, imports the
# dataset to HDF5, trains configs/fashion_mnist.yaml, evaluates the final checkpoint on the
# test set and reports the accuracy and where the checkpoint is. It runs the layout README
# recommends within a node: one MPI rank, with a thread per core (threads share one copy of
# the weights and sum nothing between them; ranks pay for a gradient sum every step).
#   RANKS=2 scripts/demo.sh  --set training.epochs=30     (2 ranks, the cores split between
#                                                           them; extra args go to dmlp train)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$here/install-deps.sh" --demo
user_wait_policy=${OMP_WAIT_POLICY-}
source "$here/env.sh"
dmlp_build
dmlp=$DMLP_BUILD/bin/dmlp
cd "$DMLP_ROOT"

src=/usr/share/datasets/fashion-mnist
mkdir -p data
for split in train:train test:t10k; do
  name=${split%%:*} prefix=${split##*:}
  out=data/fashion_mnist_$name.h5
  if [[ ! -s $out ]]; then
    "$dmlp" import idx --images "$src/$prefix-images-idx3-ubyte.gz" \
                       --labels "$src/$prefix-labels-idx1-ubyte.gz" --output "$out"
  fi
done

# A fresh run each time, so the report and the plot describe this run alone.
rm -rf runs/fashion_mnist
ranks=${RANKS:-1}
cores=$(nproc)
threads=$(( cores / ranks > 0 ? cores / ranks : 1 ))
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$threads}
# env.sh lets idle threads sleep, for ranks that share cores (the tests). With a core per
# thread they should spin between two kernels instead: sleeping cost 2-5x at 2 threads.
if [[ -z $user_wait_policy ]] && (( ranks * OMP_NUM_THREADS <= cores )); then
  unset OMP_WAIT_POLICY
fi
echo "demo: training on $ranks rank(s) x $OMP_NUM_THREADS thread(s)"
start=$(date +%s)
mpirun -np "$ranks" --bind-to none "$dmlp" train configs/fashion_mnist.yaml "$@"
end=$(date +%s)

ckpt=$(readlink -f runs/fashion_mnist/latest.h5)
result=$(mpirun -np "$ranks" --bind-to none "$dmlp" eval --checkpoint "$ckpt" \
                --data data/fashion_mnist_test.h5 --json)
accuracy=$(sed -n 's/.*"accuracy": \([0-9.]*\).*/\1/p' <<<"$result")
echo
echo "demo: trained in $((end - start)) s"
echo "demo: test accuracy $accuracy on $(sed -n 's/.*"samples": \([0-9]*\).*/\1/p' <<<"$result") Fashion-MNIST test images"
echo "demo: checkpoint $ckpt"

# Loss and accuracy curves from the run's metrics.jsonl (Debian's python3 has matplotlib).
py=/usr/bin/python3
[[ -x $py ]] || py=python3
if "$py" scripts/plot_metrics.py runs/fashion_mnist/metrics.jsonl -o runs/fashion_mnist/metrics.png \
     >/dev/null 2>&1; then
  echo "demo: curves    $DMLP_ROOT/runs/fashion_mnist/metrics.png"
else
  echo "demo: (no plot: python3-matplotlib is missing)"
fi
