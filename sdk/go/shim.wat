;; weir's stand-in for the WASI preview1 file functions of Go's runtime.
;;
;; Go's wasip1 runtime imports fd_write, fd_close, fd_fdstat_get, fd_fdstat_set_flags,
;; fd_prestat_get and fd_prestat_dir_name. Through the preview1 adapter these import
;; wasi:filesystem, which a stage is refused without a grant. build.sh points those imports
;; of the Go module at this adapter instead (the rest stay with the preview1 adapter):
;; there are no preopened directories and no files, and what Go writes to stdout or stderr
;; (fmt.Print, a panic's message) goes to the host's log through weir:stage/log, one line
;; per write, at info for stdout and warn for stderr.
(module
  (import "env" "memory" (memory 0))
  (import "weir:stage/log@0.3.0" "log" (func $log (param i32 i32 i32)))

  ;; errno values of WASI preview1
  (global $EBADF i32 (i32.const 8))

  (func (export "fd_write") (param $fd i32) (param $iovs i32) (param $count i32)
    (param $nwritten i32) (result i32)
    (local $i i32) (local $ptr i32) (local $len i32) (local $total i32) (local $level i32)
    (if (i32.eq (local.get $fd) (i32.const 1)) (then (local.set $level (i32.const 2)))
      (else (if (i32.eq (local.get $fd) (i32.const 2)) (then (local.set $level (i32.const 3)))
        (else (return (global.get $EBADF))))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
        (local.set $ptr (i32.load (i32.add (local.get $iovs) (i32.shl (local.get $i) (i32.const 3)))))
        (local.set $len (i32.load offset=4 (i32.add (local.get $iovs) (i32.shl (local.get $i) (i32.const 3)))))
        (local.set $total (i32.add (local.get $total) (local.get $len)))
        ;; A line's newline is not part of the log line.
        (if (i32.and (i32.gt_u (local.get $len) (i32.const 0))
              (i32.eq (i32.load8_u (i32.sub (i32.add (local.get $ptr) (local.get $len)) (i32.const 1)))
                (i32.const 10)))
          (then (local.set $len (i32.sub (local.get $len) (i32.const 1)))))
        (if (i32.gt_u (local.get $len) (i32.const 0))
          (then (call $log (local.get $level) (local.get $ptr) (local.get $len))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.store (local.get $nwritten) (local.get $total))
    (i32.const 0))

  (func (export "fd_close") (param i32) (result i32)
    (global.get $EBADF))

  ;; stdin, stdout and stderr are character devices without rights to seek; nothing else is open.
  (func (export "fd_fdstat_get") (param $fd i32) (param $buf i32) (result i32)
    (if (i32.gt_u (local.get $fd) (i32.const 2)) (then (return (global.get $EBADF))))
    (i64.store (local.get $buf) (i64.const 2)) ;; filetype character device, no flags
    (i64.store offset=8 (local.get $buf) (i64.const 0))
    (i64.store offset=16 (local.get $buf) (i64.const 0))
    (i32.const 0))

  (func (export "fd_fdstat_set_flags") (param $fd i32) (param i32) (result i32)
    (if (i32.gt_u (local.get $fd) (i32.const 2)) (then (return (global.get $EBADF))))
    (i32.const 0))

  ;; No preopened directories.
  (func (export "fd_prestat_get") (param i32 i32) (result i32)
    (global.get $EBADF))

  (func (export "fd_prestat_dir_name") (param i32 i32 i32) (result i32)
    (global.get $EBADF))

  ;; Waiting on clocks and descriptors: a stage's call never waits (time.Sleep and timers
  ;; are not available in a stage).
  (func (export "poll_oneoff") (param i32 i32 i32 i32) (result i32)
    (i32.const 52)) ;; ENOSYS
)
