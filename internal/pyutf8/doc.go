// Package pyutf8 decodes UTF-8 the way Python's
// bytes.decode("utf-8", errors="replace") does, which the notebook's
// pipeline relies on: each maximal ill-formed subpart becomes one U+FFFD.
package pyutf8
