package bpe

import (
	"container/heap"
	"math"
)

// smallPiece is the longest piece merged by the simple quadratic loop;
// longer ones (rare: runs of newlines, long numbers or symbol runs) go
// through a heap, so that a 1 MB piece takes milliseconds, not hours.
const smallPiece = 64

// appendPiece appends the ids of one pre-tokenized piece: rank-BPE as in
// tiktoken (repeatedly join the adjacent parts whose concatenation has the
// lowest id, leftmost first), which equals encoder.py's pair-rank BPE for
// GPT-2 because its ids follow merge order (see FromFiles).
func (t *Tokenizer) appendPiece(dst []int32, piece string) []int32 {
	if id, ok := t.ranks[piece]; ok {
		return append(dst, int32(id))
	}
	if len(piece) <= smallPiece {
		return t.mergeSmall(dst, piece)
	}
	return t.mergeHeap(dst, piece)
}

// mergeSmall is tiktoken's byte_pair_merge: parts[i] is the start of part
// i and the rank of joining parts i and i+1 (MaxInt: none).
func (t *Tokenizer) mergeSmall(dst []int32, piece string) []int32 {
	type part struct{ start, rank int }
	var buf [smallPiece + 1]part
	parts := buf[:len(piece)+1]
	rank := func(i int) int {
		if i+2 < len(parts) {
			if r, ok := t.ranks[piece[parts[i].start:parts[i+2].start]]; ok {
				return r
			}
		}
		return math.MaxInt
	}
	for i := range parts {
		parts[i] = part{i, math.MaxInt}
	}
	for i := range parts {
		parts[i].rank = rank(i)
	}
	for len(parts) > 2 {
		best := 0
		for i := 1; i < len(parts)-1; i++ {
			if parts[i].rank < parts[best].rank {
				best = i
			}
		}
		if parts[best].rank == math.MaxInt {
			break
		}
		parts = append(parts[:best+1], parts[best+2:]...)
		parts[best].rank = rank(best)
		if best > 0 {
			parts[best-1].rank = rank(best - 1)
		}
	}
	for i := 0; i+1 < len(parts); i++ {
		dst = append(dst, int32(t.ranks[piece[parts[i].start:parts[i+1].start]]))
	}
	return dst
}

// mergeHeap is mergeSmall in O(n log n): parts are a linked list over byte
// offsets, and candidate joins wait in a heap ordered by (rank, start);
// an entry is stale once its left part is gone or has grown.
func (t *Tokenizer) mergeHeap(dst []int32, piece string) []int32 {
	n := len(piece)
	next := make([]int, n+1) // start of the part after the part starting at i (n: none); next[n] = n
	prev := make([]int, n)   // start of the part before (−1: none)
	alive := make([]bool, n)
	for i := range n {
		next[i], prev[i], alive[i] = i+1, i-1, true
	}
	next[n] = n
	h := &joinHeap{}
	push := func(i int) { // candidate: join the part at i with its successor
		if j := next[i]; j < n {
			if r, ok := t.ranks[piece[i:next[j]]]; ok {
				heap.Push(h, join{rank: r, start: i, end: next[j]})
			}
		}
	}
	for i := range n - 1 {
		push(i)
	}
	for h.Len() > 0 {
		c := heap.Pop(h).(join)
		if !alive[c.start] || next[c.start] == n || next[next[c.start]] != c.end {
			continue // stale
		}
		j := next[c.start]
		alive[j] = false
		next[c.start] = next[j]
		if next[j] < n {
			prev[next[j]] = c.start
		}
		push(c.start)
		if p := prev[c.start]; p >= 0 {
			push(p)
		}
	}
	for i := 0; i < n; i = next[i] {
		dst = append(dst, int32(t.ranks[piece[i:next[i]]]))
	}
	return dst
}

// join is a candidate merge of the parts piece[start:mid] and
// piece[mid:end], with the id of piece[start:end] as rank.
type join struct{ rank, start, end int }

type joinHeap []join

func (h joinHeap) Len() int { return len(h) }
func (h joinHeap) Less(a, b int) bool {
	if h[a].rank != h[b].rank {
		return h[a].rank < h[b].rank
	}
	return h[a].start < h[b].start
}
func (h joinHeap) Swap(a, b int) { h[a], h[b] = h[b], h[a] }
func (h *joinHeap) Push(x any)   { *h = append(*h, x.(join)) }
func (h *joinHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
