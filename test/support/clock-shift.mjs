// Test-only instrumentation: a wall-clock step inside one agent process, as NTP
// or a resumed VM makes it, loaded with `node --import test/support/clock-shift.mjs`
// (clockShift() in chaos-harness.ts gives the flags). The offset, in ms, is read
// from $CLOCK_SHIFT_FILE (a number; missing or empty: 0) every 20 ms, and added
// to Date.now() and to `new Date()` without arguments. The monotonic clocks
// (performance.now, process.hrtime, the timers' own clock) are left alone: a
// real step moves the wall clock only. Nothing of this ships.
import { readFileSync } from 'node:fs';
import { setInterval } from 'node:timers';

const file = process.env.CLOCK_SHIFT_FILE;
if (file) {
  let offset = 0;
  const read = () => {
    try {
      const n = Number(readFileSync(file, 'utf8').trim() || '0');
      if (Number.isFinite(n)) offset = n;
    } catch {
      offset = 0;
    }
  };
  read();
  setInterval(read, 20).unref();
  const RealDate = Date;
  const realNow = RealDate.now.bind(RealDate);
  class ShiftedDate extends RealDate {
    constructor(...args) {
      if (args.length === 0) super(realNow() + offset);
      else super(...args);
    }
    static now() {
      return realNow() + offset;
    }
  }
  globalThis.Date = ShiftedDate;
}
