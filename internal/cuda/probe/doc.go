// Package probe checks, before gorgonia.org/cu's package initialisation
// runs, that the CUDA driver initialises, and otherwise exits with a
// message that says what is wrong and what to do (cu's own init prints a
// bare error and exits). Go initialises independent packages in import
// path order, and github.com/… sorts before gorgonia.org/…; package cuda
// imports this one for that effect.
package probe
