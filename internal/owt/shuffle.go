package owt

// indexBlock is how many random indices the Hugging Face buffer shuffle
// draws at once: rng.integers(0, buffer_size, size=1000)
// (BufferShuffledExamplesIterable._iter_random_indices, random_batch_size).
const indexBlock = 1000

// bufferShuffle is datasets 2.20's BufferShuffledExamplesIterable over items
// of type T. Feed every item of the source to Add, which returns an item to
// yield once the buffer is full; at the end call Finish and yield the buffer
// in order. Memory is the buffer (size items) plus one block of indices.
type bufferShuffle[T any] struct {
	rng   Generator
	size  int
	buf   []T   // (≤ size)
	block []int // (indexBlock) the current block of indices
	pos   int   // next unused index in block; len(block) when used up
}

func newBufferShuffle[T any](rng Generator, size int) *bufferShuffle[T] {
	return &bufferShuffle[T]{rng: rng, size: size, block: make([]int, indexBlock), pos: indexBlock}
}

// Add takes the next source item. While the buffer fills it keeps x and
// returns ok false; afterwards it returns buffer[i] for the next random index
// i and puts x in its place.
func (s *bufferShuffle[T]) Add(x T) (out T, ok bool) {
	if len(s.buf) < s.size {
		s.buf = append(s.buf, x)
		return out, false
	}
	// A block is drawn only when an index is needed and the previous block
	// is used up, as the Python generator does lazily.
	if s.pos == len(s.block) {
		for k := range s.block {
			s.block[k] = int(s.rng.Integers(uint64(s.size)))
		}
		s.pos = 0
	}
	i := s.block[s.pos]
	s.pos++
	out, s.buf[i] = s.buf[i], x
	return out, true
}

// Finish shuffles what is left in the buffer with the same generator
// (rng.shuffle(mem_buffer)) and returns it; the caller yields it in order.
func (s *bufferShuffle[T]) Finish() []T {
	s.rng.Shuffle(len(s.buf), func(i, j int) { s.buf[i], s.buf[j] = s.buf[j], s.buf[i] })
	return s.buf
}
