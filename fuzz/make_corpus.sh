#!/bin/bash
# Seed corpora for the harnesses: make_corpus.sh OUT_DIR BACKPROP_EXE
# writes OUT_DIR/{idx,csv,model,cli}/ with small valid inputs (and a few
# near-misses), each prefixed with the harness's option bytes (see the
# comment at the top of each fuzz_<target>.c). The model seeds are saved by
# the backprop tool itself.
set -euo pipefail
out=$1
exe=$2
mkdir -p "$out"/{idx,csv,model,cli}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ---- IDX: images (n, rows, cols) or (n, features) and labels (n)
printf '\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00\x03' >"$tmp/img"
printf '\x00\x10\x20\x30\x40\x50\x60\x70\x80\x90\xa0\xff' >>"$tmp/img"
printf '\x00\x00\x08\x02\x00\x00\x00\x03\x00\x00\x00\x02\x01\x02\x03\x04\x05\x06' >"$tmp/img2"
printf '\x00\x00\x08\x01\x00\x00\x00\x02\x07\x03' >"$tmp/lab"
gzip -9n -c "$tmp/img" >"$tmp/img.gz"
gzip -9n -c "$tmp/lab" >"$tmp/lab.gz"
# A two-member gzip stream (concatenated members are valid).
head -c 20 "$tmp/img" | gzip -n -c >"$tmp/img2m.gz"
tail -c +21 "$tmp/img" | gzip -n -c >>"$tmp/img2m.gz"
len16() { local n; n=$(stat -c %s "$1"); printf "\\x$(printf %02x $((n & 255)))\\x$(printf %02x $((n >> 8)))"; }
{ printf '\x00'; cat "$tmp/img"; } >"$out/idx/images"
{ printf '\x00'; cat "$tmp/img2"; } >"$out/idx/images_2d"
{ printf '\x02'; cat "$tmp/img"; } >"$out/idx/images_harness_gzip"
{ printf '\x00'; cat "$tmp/img.gz"; } >"$out/idx/images_gz"
{ printf '\x00'; cat "$tmp/img2m.gz"; } >"$out/idx/images_gz_two_members"
{ printf '\x01'; len16 "$tmp/img"; cat "$tmp/img" "$tmp/lab"; } >"$out/idx/pair"
{ printf '\x03'; len16 "$tmp/img"; cat "$tmp/img" "$tmp/lab"; } >"$out/idx/pair_harness_gzip"
{ printf '\x01'; len16 "$tmp/img.gz"; cat "$tmp/img.gz" "$tmp/lab.gz"; } >"$out/idx/pair_gz"

# ---- CSV: option bytes (header|no_labels<<1|delimiter<<2|n_targets<<5, label column)
csv() { local name=$1 b0=$2 b1=$3; shift 3; { printf "\\x$b0\\x$b1"; printf "$@"; } >"$out/csv/$name"; }
csv labels_last 00 ff '1,2,0\n3.5,-4e-3,1\n0,0,2\n'
csv header 01 ff 'a,b,label\n1,2,0\r\n3,4,1\r\n'
csv label_first 00 00 '2,0.5,0.25\n1,1e3,-7\n\n'
csv semicolon 04 ff '1;2;3\n4;5;6\n'
csv tab_targets 28 01 '1\t2\t3\t4\n5\t6\t7\t8\n'
csv no_labels 02 00 '  1 , 2 ,3\n4,5,6\n'
csv targets_header 41 fe 'x,y,t1,t2\n1,2,0.5,0.25\n3,4,-1,inf\n'

# ---- model files saved by the tool (first byte 1: the harness fixes CRCs)
printf '0.1,0.2,0.3,0\n0.4,0.5,0.6,1\n0.7,0.8,0.9,2\n0.2,0.1,0.0,1\n' >"$tmp/train.csv"
printf '0.1,0.2,0.3,0.5\n0.4,0.5,0.6,0.25\n0.7,0.8,0.9,1\n' >"$tmp/reg.csv"
i=0
for args in "--layers 4 --optimizer adam" "--layers none --optimizer sgd" \
            "--layers 3,2 --optimizer momentum --activation tanh" \
            "--layers 2 --optimizer adamw --standardize"; do
    # shellcheck disable=SC2086
    "$exe" train --train-csv "$tmp/train.csv" --test-csv "$tmp/train.csv" $args \
        --epochs 1 --batch 2 --save "$tmp/m$i.bpm" >/dev/null
    for fix in 0 1; do
        { printf "\\x0$fix"; cat "$tmp/m$i.bpm"; } >"$out/model/model${i}_fix$fix"
    done
    i=$((i + 1))
done
"$exe" train --train-csv "$tmp/reg.csv" --test-csv "$tmp/reg.csv" --targets 1 --layers 2 \
    --epochs 1 --batch 3 --save "$tmp/reg.bpm" >/dev/null
{ printf '\x01'; cat "$tmp/reg.bpm"; } >"$out/model/regression"

# ---- CLI: argument words separated by newlines (argv[0] is implicit)
i=0
while IFS= read -r line; do
    printf '%s' "$line" | tr ' ' '\n' >"$out/cli/args$i"
    i=$((i + 1))
done <<'LINES'
train --layers 256,128,100 --activation relu --optimizer adam --lr 0.001 --epochs 10
train --train-csv a.csv --test-csv b.csv --csv-header --label-column 0 --targets 2
train --optimizer nesterov --momentum 0.95 --weight-decay 1e-4 --clip 5 --schedule cosine --warmup 100 --min-lr 1e-5
train --schedule step --step-size 10 --gamma 0.5 --batch 64 --threads 2 --seed 18446744073709551615
train --val-split 0.1 --standardize --save m.bpm --resume m.bpm --metrics m.jsonl --init xavier-normal --alpha 0.2
eval model.bpm --data /tmp --batch 100
eval model.bpm --test-csv t.csv --csv-header --label-column -1
predict model.bpm --csv x.csv --no-labels --probabilities --output out.csv
predict model.bpm --images t10k-images-idx3-ubyte.gz
info
train --help
--version
train --layers none --activation leaky_relu
LINES
echo "seeds: $(ls "$out/idx" | wc -l) idx, $(ls "$out/csv" | wc -l) csv, $(ls "$out/model" | wc -l) model, $(ls "$out/cli" | wc -l) cli"
