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
// (sent as X-Linked-Etag, with X-Linked-Size) and the git blob sha1 for
// files stored in git; Client.Download checks the bytes it receives against
// it, and against the size, before a blob takes its final name. Where the
// ETag is no such hash (a mirror's own ETag), the hub's metadata API
// (paths-info, else the revision listing) gives the sha256 (lfs.oid) or the
// blob id; a file nothing can verify is kept only when its size matches,
// with a warning (or refused, with Client.RequireVerified), and never when
// it is an HTML page. Client.Download's documentation has the rules.
//
// Invariants: blobs/{etag} exists only complete and checked (by its hash,
// or by its size alone where the hub gives no hash, as warned), written
// under the .incomplete name, then renamed; a snapshot entry is created
// only after its blob; refs/{branch} is written last, once every requested
// file of the commit is in place.
package hub
