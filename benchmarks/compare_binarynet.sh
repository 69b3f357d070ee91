#!/usr/bin/env bash
# Side by side, alternating, ROUNDS times: bnno and larq training BinaryNet with the
# paper's section 5.1 recipe (bop set) at batch 100 on synthetic in-memory data.
# Prints each run's images/s and the medians and their ratio.
# Usage: bash benchmarks/compare_binarynet.sh LARQ_VENV [ROUNDS] [STEPS] [--mixed-precision]
#   (bnno must be installed in the current environment; LARQ_VENV is created if absent;
#   --mixed-precision runs both sides in mixed_bfloat16, mixed_float16 on GPUs)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
larq_venv="$1"; rounds="${2:-3}"; steps="${3:-20}"; precision="${4:-}"
bnno_rates=(); larq_rates=()
for round in $(seq "$rounds"); do
  bnno_json="$(TF_CPP_MIN_LOG_LEVEL=3 bnno benchmark binarynet --hparams-set bop --batch-size 100 \
    --steps "$steps" --warmup 5 $precision --json 2>/dev/null | tail -n 1)"
  larq_json="$(bash "$here/run_larq.sh" "$larq_venv" --batch-size 100 --steps "$steps" --warmup 5 $precision 2>/dev/null | tail -n 1)"
  bnno_rate="$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["images_per_second"], 1))' "$bnno_json")"
  larq_rate="$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["images_per_second"], 1))' "$larq_json")"
  echo "round $round: bnno $bnno_rate images/s, larq $larq_rate images/s"
  bnno_rates+=("$bnno_rate"); larq_rates+=("$larq_rate")
done
python3 - "${bnno_rates[*]}" "${larq_rates[*]}" <<'PY'
import statistics, sys
bnno = [float(x) for x in sys.argv[1].split()]
larq = [float(x) for x in sys.argv[2].split()]
b, l = statistics.median(bnno), statistics.median(larq)
print(f"median: bnno {b:.1f} images/s, larq {l:.1f} images/s, ratio {b / l:.2f}x")
PY
