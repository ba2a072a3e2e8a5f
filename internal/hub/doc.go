// Package hub finds and fetches files of the Hugging Face hub in the local
// hub cache ($HF_HUB_CACHE, else $HF_HOME/hub, default
// ~/.cache/huggingface/hub), laid out as huggingface_hub lays it out, so
// that files Python users already downloaded are found and reused, and
// files fetched here are found by Python:
//
//	models--{owner}--{name}/            (datasets--{owner}--{name}/ for datasets)
//	  refs/{branch}                     the commit the branch pointed at
//	  blobs/{etag}                      file contents, named by the hub's ETag
//	  blobs/{etag}.incomplete           a download in progress, resumed later
//	  snapshots/{commit}/{file}         relative symlink to ../../blobs/{etag}
//
// A file's ETag is the sha256 of its contents for files stored with Git LFS
// and the git blob sha1 for files stored in git; Client.Download checks the
// bytes it receives against it before a blob takes its final name.
//
// Invariants: blobs/{etag} exists only complete and verified (written under
// the .incomplete name, then renamed); a snapshot entry is created only
// after its blob; refs/{branch} is written last, once every requested file
// of the commit is in place.
package hub
