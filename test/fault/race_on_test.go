//go:build race

package fault

// raceEnabled builds the server with the race detector too when the suite
// itself runs under it.
const raceEnabled = true
