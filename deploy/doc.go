// Package deploy holds no code: it is the home of the cluster files for
// sharded activation caching (README, "Caching on a cluster") and of the test
// that keeps them working.
//
//   - slurm/cache.sbatch: a Slurm job array, one `ctxdep cache build` shard
//     per task (index and count from SLURM_ARRAY_TASK_ID/COUNT), with the
//     dependent merge and the rerun of one index in its header.
//   - k8s/data-pvc.yaml, k8s/cache-job.yaml, k8s/cache-merge-job.yaml: a
//     ReadWriteMany volume, a Kubernetes Indexed Job (index from
//     JOB_COMPLETION_INDEX, count from --shard-count) and the merge + verify
//     Job to apply after it.
//
// deploy_test.go parses the manifests, checks that they agree (Indexed,
// completions = parallelism = --shard-count, output on the shared volume),
// then runs each pod's command locally with its index, /data mapped to a
// temp dir, the tiny fixture model and a freshly built ctxdep, runs the merge
// Job's commands, and checks the cache is bit-identical to a single-process
// build (scripts/cachecmp). It runs the sbatch file the same way, with the
// variables Slurm would set. scripts/slurm-test.sh runs the sbatch file on a
// real one-node Slurm cluster.
package deploy
