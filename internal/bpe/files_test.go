package bpe

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// hfFiles is a GPT-2 tokenizer in Hugging Face's form, made from the
// embedded ranks and the merges derived from them (what gen_bpe.py
// --tokenizer-dir writes): vocab maps byte-level strings to ids.
type hfFiles struct {
	vocab  map[string]int
	merges [][2]string // byte-level strings
}

func newHFFiles(t *testing.T) hfFiles {
	t.Helper()
	tok, _ := gpt2(t)
	be := bytesToUnicode()
	s := func(b string) string {
		var out []rune
		for i := 0; i < len(b); i++ {
			out = append(out, be[b[i]])
		}
		return string(out)
	}
	f := hfFiles{vocab: map[string]int{EOTText: EOT}}
	for b, id := range tok.ranks {
		f.vocab[s(b)] = id
	}
	for _, m := range shared.merges {
		f.merges = append(f.merges, [2]string{s(m[0]), s(m[1])})
	}
	return f
}

func (f hfFiles) writeVocabMerges(t *testing.T, dir string) {
	t.Helper()
	writeJSON(t, filepath.Join(dir, "vocab.json"), f.vocab)
	var b strings.Builder
	b.WriteString("#version: 0.2\n")
	for _, m := range f.merges {
		b.WriteString(m[0] + " " + m[1] + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "merges.txt"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tokenizerJSON returns GPT-2's tokenizer.json as a generic object; pairs
// selects the merges format of tokenizers ≥ 0.20.
func (f hfFiles) tokenizerJSON(pairs bool) map[string]any {
	var merges []any
	for _, m := range f.merges {
		if pairs {
			merges = append(merges, []string{m[0], m[1]})
		} else {
			merges = append(merges, m[0]+" "+m[1])
		}
	}
	return map[string]any{
		"version": "1.0",
		"added_tokens": []any{map[string]any{"id": EOT, "content": EOTText, "single_word": false,
			"lstrip": false, "rstrip": false, "normalized": true, "special": true}},
		"normalizer":     nil,
		"pre_tokenizer":  map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
		"post_processor": map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
		"decoder":        map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": "",
			"end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "vocab": f.vocab, "merges": merges},
	}
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFromFiles reads the same tokenizer in each HF form and checks it
// encodes the golden text as gen_bpe.py did, with GPT2's ranks.
func TestFromFiles(t *testing.T) {
	ref, _ := gpt2(t)
	g, text := loadGolden(t)
	full := g.Cases[len(g.Cases)-1]
	f := newHFFiles(t)
	for _, tc := range []struct {
		name  string
		write func(t *testing.T, dir string)
	}{
		{"vocab.json+merges.txt", f.writeVocabMerges},
		{"tokenizer.json", func(t *testing.T, dir string) {
			writeJSON(t, filepath.Join(dir, "tokenizer.json"), f.tokenizerJSON(false))
		}},
		{"tokenizer.json pair merges", func(t *testing.T, dir string) {
			writeJSON(t, filepath.Join(dir, "tokenizer.json"), f.tokenizerJSON(true))
		}},
		{"tokenizer.json EOT only added", func(t *testing.T, dir string) {
			tj := f.tokenizerJSON(false)
			v := maps.Clone(f.vocab)
			delete(v, EOTText)
			tj["model"].(map[string]any)["vocab"] = v
			writeJSON(t, filepath.Join(dir, "tokenizer.json"), tj)
		}},
		{"tokenizer.json wins over vocab.json", func(t *testing.T, dir string) {
			writeJSON(t, filepath.Join(dir, "tokenizer.json"), f.tokenizerJSON(false))
			if err := os.WriteFile(filepath.Join(dir, "vocab.json"), []byte("not json"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.write(t, dir)
			tok, err := FromFiles(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := tok.Encode(string(text)); !slices.Equal(got, full.IDs) {
				t.Errorf("Encode(golden.txt) differs from golden.json at token %d", firstDiff(got, full.IDs))
			}
			if !maps.Equal(tok.ranks, ref.ranks) {
				t.Error("ranks differ from the embedded r50k_base")
			}
			if merges, err := deriveMerges(tok.ranks); err != nil {
				t.Error(err)
			} else if !slices.Equal(merges, shared.merges) {
				t.Error("merges differ from those derived from r50k_base")
			}
		})
	}
}

// TestFromFilesErrors checks that files which are not GPT-2-like are
// refused with an error that names the file.
func TestFromFilesErrors(t *testing.T) {
	f := newHFFiles(t)
	vm := func(mutate func(f *hfFiles)) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			g := hfFiles{vocab: maps.Clone(f.vocab), merges: slices.Clone(f.merges)}
			mutate(&g)
			g.writeVocabMerges(t, dir)
		}
	}
	tj := func(mutate func(tj map[string]any)) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			m := f.tokenizerJSON(false)
			mutate(m)
			writeJSON(t, filepath.Join(dir, "tokenizer.json"), m)
		}
	}
	model := func(m map[string]any) map[string]any { return m["model"].(map[string]any) }
	write := func(name, content string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name  string
		write func(t *testing.T, dir string)
		want  []string // substrings of the error
	}{
		{"empty dir", func(*testing.T, string) {}, []string{"neither tokenizer.json nor vocab.json"}},
		{"vocab not json", write("vocab.json", "{"), []string{"vocab.json"}},
		{"no merges.txt", write("vocab.json", "{}"), []string{"merges.txt"}},
		{"swapped merges", vm(func(f *hfFiles) { f.merges[10], f.merges[11] = f.merges[11], f.merges[10] }),
			[]string{"merges.txt: line 12", "follow merge order"}},
		{"missing merge", vm(func(f *hfFiles) { f.merges = f.merges[:len(f.merges)-1] }),
			[]string{"merges.txt", "49999 merges"}},
		{"merge of unknown token", vm(func(f *hfFiles) { f.merges[5] = [2]string{"zzzqqq", "t"} }),
			[]string{"merges.txt: line 7", "not in the vocabulary"}},
		{"merge that rank-BPE would not make", vm(func(f *hfFiles) {
			// Replace a merge by another split of the same token into two
			// earlier tokens: ids still follow merge order, but the
			// byte-string ranks tiktoken uses would not reproduce it.
			for i, m := range f.merges {
				whole := []rune(m[0] + m[1])
				for k := 1; k < len(whole); k++ {
					a, b := string(whole[:k]), string(whole[k:])
					ia, oka := f.vocab[a]
					ib, okb := f.vocab[b]
					if a != m[0] && oka && okb && ia < 256+i && ib < 256+i {
						f.merges[i] = [2]string{a, b}
						return
					}
				}
			}
			panic("no alternative split found")
		}), []string{"merges.txt: line ", "rank-BPE splits"}},
		{"wrong EOT id", vm(func(f *hfFiles) {
			id := f.vocab["!"]
			f.vocab["!"], f.vocab[EOTText] = EOT, id
		}), []string{"vocab.json", "must have id 50256"}},
		{"not byte-level", vm(func(f *hfFiles) { f.vocab["é€"] = f.vocab["ab"]; delete(f.vocab, "ab") }),
			[]string{"vocab.json", "byte-level alphabet"}},
		{"extra token", vm(func(f *hfFiles) { f.vocab["<pad>"] = 50257 }), []string{"vocab.json", "50258 tokens"}},
		{"bad merge line", func(t *testing.T, dir string) {
			f.writeVocabMerges(t, dir)
			write("merges.txt", "#version: 0.2\nĠ t\nabc\n")(t, dir)
		}, []string{"merges.txt: line 3", "not a merge"}},
		{"tokenizer.json not json", write("tokenizer.json", "[1,"), []string{"tokenizer.json"}},
		{"prefix space", tj(func(m map[string]any) {
			m["pre_tokenizer"].(map[string]any)["add_prefix_space"] = true
		}), []string{"tokenizer.json", "add_prefix_space"}},
		{"normalizer", tj(func(m map[string]any) { m["normalizer"] = map[string]any{"type": "NFC"} }),
			[]string{"tokenizer.json", "normalizer"}},
		{"wordpiece", tj(func(m map[string]any) { model(m)["type"] = "WordPiece" }), []string{"tokenizer.json", "WordPiece"}},
		{"extra added token", tj(func(m map[string]any) {
			m["added_tokens"] = append(m["added_tokens"].([]any), map[string]any{"id": 50257, "content": "<pad>"})
		}), []string{"tokenizer.json", "<pad>"}},
		{"merge not a pair", tj(func(m map[string]any) { model(m)["merges"].([]any)[3] = "a b c" }),
			[]string{"tokenizer.json", "model.merges[3]"}},
		{"merge out of order", tj(func(m map[string]any) {
			ms := model(m)["merges"].([]any)
			ms[0], ms[1] = ms[1], ms[0]
		}), []string{"tokenizer.json: model.merges[0]", "merge order"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.write(t, dir)
			_, err := FromFiles(dir)
			if err == nil {
				t.Fatal("FromFiles succeeded, want an error")
			}
			t.Log(err)
			if !strings.HasPrefix(err.Error(), "bpe: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestParseMerges covers the lines merges.txt may hold.
func TestParseMerges(t *testing.T) {
	for _, tc := range []struct {
		in    string
		want  [][2]string
		lines []int
		err   string
	}{
		{"#version: 0.2\nĠ t\nĠ a\n", [][2]string{{"Ġ", "t"}, {"Ġ", "a"}}, []int{2, 3}, ""},
		{"Ġ t\r\nh e", [][2]string{{"Ġ", "t"}, {"h", "e"}}, []int{1, 2}, ""},
		{"#version: 0.2\n\nĠ t\n\n", [][2]string{{"Ġ", "t"}}, []int{3}, ""},
		{"", nil, nil, ""},
		{"#version: 0.2\nab\n", nil, nil, "line 2"},
		{"a b c\n", nil, nil, "line 1"},
		{"a  b\n", nil, nil, "line 1"},
		{" b\n", nil, nil, "line 1"},
	} {
		got, lines, err := parseMerges([]byte(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseMerges(%q) error = %v, want one naming %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) || !slices.Equal(lines, tc.lines) {
			t.Errorf("parseMerges(%q) = %q, %v, %v; want %q, %v", tc.in, got, lines, err, tc.want, tc.lines)
		}
	}
}
