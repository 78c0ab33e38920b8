// lmembed/eval/eval.hpp - MTEB-style evaluation: metrics, statistics, tasks and the runner.
//
//   auto task = lmembed::eval::load_bundled_task("sts-b", data_dir);
//   lmembed::eval::TaskResult r = lmembed::eval::evaluate(task, embedder);
//   auto w = lmembed::eval::wilcoxon(scores_a, scores_b);       // over tasks
//   auto b = lmembed::eval::paired_bootstrap(r_a.per_example, r_b.per_example);
// See docs/evaluation.md.
#pragma once

#include "lmembed/eval/kmeans.hpp"
#include "lmembed/eval/logreg.hpp"
#include "lmembed/eval/metrics.hpp"
#include "lmembed/eval/runner.hpp"
#include "lmembed/eval/sha256.hpp"
#include "lmembed/eval/stats.hpp"
#include "lmembed/eval/tasks.hpp"
#include "lmembed/eval/topk.hpp"
