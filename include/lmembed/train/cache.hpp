// lmembed/train/cache.hpp - the selective, sharded, memory-mapped cache of backbone states.
//
// The backbone is frozen, so the hidden states a pooling head consumes are computed once and
// the head is trained over them many times. The cache keeps exactly what the capture spec
// needs (d per text for eos, L x d for multi_layer, T x d for latent - only the pooled tokens
// [pool_from, end) - and d for mean), each distinct (instruction, text) once.
//
// Layout of a cache folder:
//   index.json      header (model, attention, capture, dtype, d, n_layers, sizes, checksums of
//                   the two files below) and the shard plan; a shard's entry gains its checksum
//                   when the shard is finished. Rewritten atomically after every shard.
//   texts.jsonl     the distinct texts in id order: {"instruction": ..., "text": ...}
//   examples.jsonl  one example a line as text ids: [query, positive, negative...]
//   shard-NNNNN.bin one shard: a 64-byte header, row offsets, then the rows (f32 or f16)
//   progress-R.json the shards rank R finished in a run of several processes (merged into
//                   index.json when the run ends or the next run starts)
// Every file is written atomically (temp + fsync + rename). A crash loses at most the shard in
// progress: a rerun with the same inputs verifies the finished shards by checksum, keeps them,
// and redoes the rest (and any shard whose checksum no longer matches).
//
// Under MPI (a Communicator of R ranks, e.g. `mpirun -np R lmembed cache`) every rank
// tokenizes all texts and so computes the same shard plan; the shards still to build are
// dealt to the ranks by a deterministic greedy balance of their token counts, each rank writes
// its own shards (and its progress file after each), and rank 0 writes the merged index. A
// shard's bytes depend only on its texts, so the folder is byte for byte the single-process
// one, whatever R; a rerun with any R after a crash of any rank resumes from what was finished.
// The folder must be on a file system every rank sees (one machine, NFS, Lustre ...).
//
// The parts: cache_dataset.hpp (texts, examples, their .jsonl files), cache_capture.hpp (capture
// names), cache_format.hpp (shard header, file names, checksums), cache_deal.hpp (the work of
// several ranks), cache_build.hpp (build_cache), cache_reader.hpp (Cache, for training).
#pragma once

#include "lmembed/train/cache_build.hpp"
#include "lmembed/train/cache_capture.hpp"
#include "lmembed/train/cache_dataset.hpp"
#include "lmembed/train/cache_deal.hpp"
#include "lmembed/train/cache_format.hpp"
#include "lmembed/train/cache_reader.hpp"
