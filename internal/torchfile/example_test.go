package torchfile_test

import (
	"fmt"
	"log"

	"github.com/ctxdep/ctxdep/internal/torchfile"
)

// Load a transcoder checkpoint ({"cfg": dataclass, "state_dict": OrderedDict}),
// read its config and its tensors.
func ExampleLoad() {
	obj, err := torchfile.Load("../../testdata/torchfile/transcoder.pt")
	if err != nil {
		log.Fatal(err)
	}
	cfgV, _ := obj.(*torchfile.Dict).Get("cfg")
	cfg := cfgV.(*torchfile.Object)
	hook, _ := cfg.Attr("hook_point")
	dSAE, _ := cfg.Attr("d_sae")
	fmt.Println(cfg.Name, hook, dSAE)

	sd, err := torchfile.StateDict(obj)
	if err != nil {
		log.Fatal(err)
	}
	for i, k := range sd.Keys {
		t := sd.Values[i].(*torchfile.Tensor)
		fmt.Println(k, t.DType, t.Shape, t.Location())
	}
	bDec, _ := sd.Get("b_dec")
	vals, err := bDec.(*torchfile.Tensor).Float32()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("b_dec[0] = %.4f\n", vals[0])
	// Output:
	// LanguageModelSAERunnerConfig blocks.8.ln2.hook_normalized 8
	// W_enc float32 [4 8] cuda:0
	// b_enc float32 [8] cuda:0
	// W_dec float32 [8 4] cuda:0
	// b_dec float32 [4] cuda:0
	// b_dec_out float32 [4] cuda:0
	// b_dec[0] = -0.7422
}
