// vis-timeline 8.5.4's Graph2d (LineGraph.prototype._updateYAxis) assigns
// to an undeclared loop variable `i`, which throws a ReferenceError in
// the library's strict mode as soon as a line graph has data. A global
// of that name (this classic script's var) gives the assignment a
// binding. Nothing of ours uses it; drop this file once the library is
// fixed (assets/vendor/VENDOR.md).
var i; // eslint-disable-line no-unused-vars
