// The scheduler of the CPU emulation (emulation.hpp): the threads of a block are Boost.Context fibers on one
// host thread, taking turns in a seeded order; blocks run one after another. EMULATION.md (shared/) records
// why fibers (20 ns a switch, ASan-compatible with the annotations below) rather than ucontext or OS threads.
#include "cuda/emulation/emulation.hpp"

#include <boost/context/fiber.hpp>
#include <boost/context/stack_context.hpp>

#include <algorithm>
#include <cstdlib>
#include <list>
#include <mutex>
#include <random>
#include <sstream>
#include <vector>

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// The bounds of the section that holds every static __shared__ variable (made by the linker; absent when no
// kernel of the program declares one, hence weak).
extern "C" __attribute__((weak)) char __start_tm_emu_shared[], __stop_tm_emu_shared[];

namespace transmamba::emu {

namespace ctx = boost::context;

namespace {

constexpr std::size_t kStackBytes = 64 * 1024;  // per thread; EMULATION.md 3.3: 8 KB ran, 4 KB crashed

// ASan must be told about every stack switch (EMULATION.md 3.2); without ASan these do nothing.
void start_switch(void** fake_stack, const void* bottom, std::size_t size) {
#ifdef __SANITIZE_ADDRESS__
  __sanitizer_start_switch_fiber(fake_stack, bottom, size);
#else
  (void)fake_stack, (void)bottom, (void)size;
#endif
}
void finish_switch(void* fake_stack, const void** bottom_old, std::size_t* size_old) {
#ifdef __SANITIZE_ADDRESS__
  __sanitizer_finish_switch_fiber(fake_stack, bottom_old, size_old);
#else
  (void)fake_stack, (void)bottom_old, (void)size_old;
#endif
}

// Fiber stacks, reused across blocks and launches (a block of 1024 threads needs 64 MiB of them).
class StackPool {
 public:
  ctx::stack_context allocate() {
    void* p;
    if (free_.empty()) {
      p = std::malloc(kStackBytes);
      if (!p) throw std::bad_alloc();
    } else {
      p = free_.back();
      free_.pop_back();
    }
    ctx::stack_context s;
    s.size = kStackBytes;
    s.sp = static_cast<char*>(p) + kStackBytes;  // stacks grow down: sp is the top
    return s;
  }
  void deallocate(ctx::stack_context& s) noexcept {
    void* p = static_cast<char*>(s.sp) - s.size;
#ifdef __SANITIZE_ADDRESS__
    ASAN_UNPOISON_MEMORY_REGION(p, s.size);  // frames left by an unwound thread must not poison the next one
#endif
    free_.push_back(p);
  }
  ~StackPool() {
    for (void* p : free_) std::free(p);
  }

 private:
  std::vector<void*> free_;
};

// Boost.Context's StackAllocator concept over the pool; records the stack's region for ASan's switch annotations.
struct PooledStack {
  StackPool* pool;
  const void** bottom;
  std::size_t* size;
  ctx::stack_context allocate() {
    ctx::stack_context s = pool->allocate();
    *bottom = static_cast<char*>(s.sp) - s.size;
    *size = s.size;
    return s;
  }
  void deallocate(ctx::stack_context& s) noexcept { pool->deallocate(s); }
};

struct Abort {};  // thrown inside a suspended thread to unwind it when its block is aborted

enum class State { ready, at_barrier, at_warp, done };

// One warp primitive in flight: the lanes named in mask meet here. Matched by mask and arrival: a lane joins
// the oldest open rendezvous of its warp with the same mask that it has not joined yet.
struct Rendezvous {
  unsigned mask = 0;
  unsigned arrived = 0;    // lanes that deposited
  unsigned unread = 0;     // lanes released but not yet past the read; erased at 0
  bool released = false;
  const char* primitive = "";
  std::array<std::uint64_t, 32> value{};
};

// An asynchronous copy (copy_async) in flight: the source's bytes, read when it was issued, and where they land.
struct PendingCopy {
  void* dst;
  std::array<unsigned char, 16> bytes;
  std::size_t size;
};

struct Thread {
  ctx::fiber fiber;   // the suspended thread, while it is not running
  ctx::fiber caller;  // inside the thread: the scheduler to switch back to
  uint3 idx{};
  State state = State::ready;
  const void* stack_bottom = nullptr;
  std::size_t stack_size = 0;
  std::vector<PendingCopy> open_copies;                 // issued since the last commit_async
  std::list<std::vector<PendingCopy>> copy_groups;      // committed, oldest first, not yet landed
};

class Block {
 public:
  Block(const GridLaunch& launch, uint3 block_idx, StackPool& pool, std::vector<unsigned char>& dyn_smem)
      : launch_(launch), block_idx_(block_idx), pool_(pool), dyn_smem_(dyn_smem) {}

  void run(const std::function<void()>& body);

  // ---- inside a thread ----
  void barrier() { suspend(State::at_barrier); }
  std::array<std::uint64_t, 32> rendezvous(unsigned mask, std::uint64_t value, const char* primitive);
  unsigned lane() const { return current_ % 32; }
  Thread& thread() { return threads_[current_]; }
  // Whether a committed group of asynchronous copies lands at once rather than at its wait: drawn from the
  // launch's seed (seed 0: never), so that a read of a buffer whose next copies have begun shows up too.
  bool land_early() { return launch_.seed != 0 && (copy_rng_() & 1u); }
  void* dynamic_shared() { return dyn_smem_.empty() ? nullptr : dyn_smem_.data(); }
  std::string where() const;  // "kernel k, block (x,y,z)"

 private:
  void suspend(State s);
  void resume(int i);
  bool release_warps();
  bool release_barrier();
  void abort_all();
  std::string describe_waiting() const;
  [[noreturn]] void fail(const std::string& what) { throw KernelError(where() + ": " + what); }

  const GridLaunch& launch_;
  uint3 block_idx_;
  StackPool& pool_;
  std::vector<unsigned char>& dyn_smem_;
  std::vector<Thread> threads_;
  std::vector<std::list<Rendezvous>> warps_;
  int current_ = -1;
  std::mt19937_64 copy_rng_;
  bool aborting_ = false;
  std::exception_ptr error_;
  const void* main_bottom_ = nullptr;  // the scheduler's stack, for ASan
  std::size_t main_size_ = 0;
};

Block* g_block = nullptr;  // the block being run (one emulated grid at a time: g_launch_mutex)
std::mutex g_launch_mutex;

Block& current_block(const char* what) {
  if (!g_block) throw KernelError(std::string(what) + " called outside an emulated kernel");
  return *g_block;
}

std::string Block::where() const {
  std::ostringstream os;
  os << "kernel " << launch_.kernel << ", block (" << block_idx_.x << "," << block_idx_.y << "," << block_idx_.z
     << ")";
  return os.str();
}

void Block::suspend(State s) {
  Thread& t = threads_[current_];
  t.state = s;
  void* fake = nullptr;
  start_switch(&fake, main_bottom_, main_size_);
  t.caller = std::move(t.caller).resume();
  finish_switch(fake, &main_bottom_, &main_size_);
  if (aborting_) throw Abort{};
}

void Block::resume(int i) {
  Thread& t = threads_[i];
  current_ = i;
  threadIdx = t.idx;
  t.state = State::ready;
  void* fake = nullptr;
  start_switch(&fake, t.stack_bottom, t.stack_size);
  t.fiber = std::move(t.fiber).resume();
  finish_switch(fake, nullptr, nullptr);
  current_ = -1;
}

std::array<std::uint64_t, 32> Block::rendezvous(unsigned mask, std::uint64_t value, const char* primitive) {
  const int n = int(threads_.size()), warp = current_ / 32, first = warp * 32;
  const unsigned lane = current_ % 32, bit = 1u << lane;
  const unsigned existing = n - first >= 32 ? 0xffffffffu : (1u << (n - first)) - 1;
  if (!(mask & bit))
    fail(std::string(primitive) + ": thread " + std::to_string(current_) + " (lane " + std::to_string(lane) +
         ") calls it with a mask that does not name its own lane");
  if (mask & ~existing)
    fail(std::string(primitive) + ": mask 0x" + [&] { std::ostringstream h; h << std::hex << mask; return h.str(); }() +
         " names lanes that warp " + std::to_string(warp) + " does not have (the block has " + std::to_string(n) +
         " threads)");
  std::list<Rendezvous>& open = warps_[warp];
  auto r = std::find_if(open.begin(), open.end(),
                        [&](const Rendezvous& x) { return !x.released && x.mask == mask && !(x.arrived & bit); });
  if (r == open.end()) r = open.insert(open.end(), Rendezvous{mask, 0, 0, false, primitive, {}});
  r->arrived |= bit;
  r->value[lane] = value;
  suspend(State::at_warp);
  const std::array<std::uint64_t, 32> all = r->value;
  r->unread &= ~bit;
  if (r->unread == 0) open.erase(r);
  return all;
}

bool Block::release_warps() {
  bool released = false;
  for (std::size_t w = 0; w < warps_.size(); ++w)
    for (Rendezvous& r : warps_[w]) {
      if (r.released || r.arrived != r.mask) continue;
      r.released = true;
      r.unread = r.mask;
      for (int lane = 0; lane < 32; ++lane)
        if (r.mask >> lane & 1u) threads_[w * 32 + lane].state = State::ready;
      released = true;
    }
  return released;
}

bool Block::release_barrier() {
  int waiting = 0, exited = 0;
  for (const Thread& t : threads_) waiting += t.state == State::at_barrier, exited += t.state == State::done;
  if (waiting == 0 || waiting + exited < int(threads_.size())) return false;
  if (exited > 0)
    fail("__syncthreads() reached by " + std::to_string(waiting) + " of " + std::to_string(threads_.size()) +
         " threads; the other " + std::to_string(exited) + " exited without reaching it (a barrier in divergent code)");
  for (Thread& t : threads_) t.state = State::ready;
  return true;
}

std::string Block::describe_waiting() const {
  std::ostringstream os;
  int barrier = 0, exited = 0;
  for (const Thread& t : threads_) barrier += t.state == State::at_barrier, exited += t.state == State::done;
  os << barrier << " threads wait at __syncthreads(), " << exited << " exited";
  for (std::size_t w = 0; w < warps_.size(); ++w)
    for (const Rendezvous& r : warps_[w])
      if (!r.released)
        os << "; warp " << w << " waits in " << r.primitive << " with mask 0x" << std::hex << r.mask
           << " for lanes 0x" << (r.mask & ~r.arrived) << std::dec;
  return os.str();
}

// Resumes every suspended thread once with aborting_ set, so that its pending barrier or warp primitive throws
// Abort and its stack unwinds (EMULATION.md 3.3: destroying a suspended fiber instead upsets ASan).
void Block::abort_all() {
  aborting_ = true;
  for (std::size_t i = 0; i < threads_.size(); ++i)
    if (threads_[i].state != State::done && threads_[i].fiber) resume(int(i));
}

void Block::run(const std::function<void()>& body) {
  const dim3 b = launch_.block;
  const int n = int(b.x * b.y * b.z);
  threads_.resize(n);
  warps_.resize((n + 31) / 32);
  for (int i = 0; i < n; ++i) {
    Thread& t = threads_[i];
    t.idx = make_uint3(i % b.x, i / b.x % b.y, i / (b.x * b.y));
    PooledStack stack{&pool_, &t.stack_bottom, &t.stack_size};
    t.fiber = ctx::fiber(std::allocator_arg, stack, [this, i, &body](ctx::fiber&& caller) {
      Thread& self = threads_[i];
      finish_switch(nullptr, &main_bottom_, &main_size_);
      self.caller = std::move(caller);
      try {
        if (!aborting_) body();  // a thread first resumed by abort_all() never starts
      } catch (const ctx::detail::forced_unwind&) {
        throw;
      } catch (const Abort&) {
      } catch (...) {
        if (!error_) error_ = std::current_exception();
      }
      self.state = State::done;
      start_switch(nullptr, main_bottom_, main_size_);  // this fiber ends: no fake stack to keep
      return std::move(self.caller);
    });
  }
  std::mt19937_64 rng(launch_.seed ^ (0x9e3779b97f4a7c15ull * (1 + block_idx_.x + 65536ull * (block_idx_.y + 65536ull * block_idx_.z))));
  copy_rng_.seed(rng() ^ 0x5851f42d4c957f2dull);
  std::mt19937_64 delay_rng(rng() ^ 0x2545f4914f6cdd1dull);
  std::vector<int> order;
  std::vector<int> sits_out(warps_.size(), 0);  // rounds each warp still sits out
  order.reserve(n);
  for (;;) {
    order.clear();
    for (int i = 0; i < n; ++i)
      if (threads_[i].state == State::ready) order.push_back(i);
    if (launch_.seed != 0) {
      std::shuffle(order.begin(), order.end(), rng);
      // Now and then a warp sits out a stretch of 1 to 32 rounds (its ready threads wait), so that the other warps
      // run ahead of it by whole phases between barriers, as warps do on a GPU: a buffer refilled while a slower
      // warp still reads it shows up. Never every warp that could run.
      for (int& s : sits_out) s = s > 0 ? s - 1 : (delay_rng() % 8 == 0 ? 1 + int(delay_rng() % 32) : 0);
      const auto waits = [&](int i) { return sits_out[i / 32] > 0; };
      if (!std::all_of(order.begin(), order.end(), waits)) order.erase(std::remove_if(order.begin(), order.end(), waits), order.end());
    }
    for (int i : order) {
      resume(i);
      if (error_) break;
    }
    if (!error_) {
      try {
        release_warps();
        release_barrier();
        const bool all_done = std::all_of(threads_.begin(), threads_.end(), [](const Thread& t) { return t.state == State::done; });
        if (all_done) return;
        const bool any_ready = std::any_of(threads_.begin(), threads_.end(), [](const Thread& t) { return t.state == State::ready; });
        if (!any_ready) fail("deadlock: " + describe_waiting());
      } catch (...) {
        error_ = std::current_exception();
      }
    }
    if (error_) {
      abort_all();
      std::rethrow_exception(error_);
    }
  }
}

}  // namespace

void run_grid(const GridLaunch& launch, const std::function<void()>& thread_body) {
  std::lock_guard<std::mutex> lock(g_launch_mutex);
  static StackPool pool;
  std::vector<unsigned char> dyn_smem(launch.dynamic_shared_bytes);
  gridDim = launch.grid;
  blockDim = launch.block;
  for (unsigned z = 0; z < launch.grid.z; ++z)
    for (unsigned y = 0; y < launch.grid.y; ++y)
      for (unsigned x = 0; x < launch.grid.x; ++x) {
        blockIdx = make_uint3(x, y, z);
        // Shared memory starts as NaN bytes: a read before any write of this block shows up.
        for (char* p = __start_tm_emu_shared; p && p < __stop_tm_emu_shared; ++p) *p = char(0xFF);
        std::fill(dyn_smem.begin(), dyn_smem.end(), 0xFF);
        Block block(launch, blockIdx, pool, dyn_smem);
        g_block = &block;
        try {
          block.run(thread_body);
        } catch (...) {
          g_block = nullptr;
          throw;
        }
        g_block = nullptr;
      }
}

void sync_threads() { current_block("__syncthreads").barrier(); }

std::array<std::uint64_t, 32> warp_rendezvous(unsigned mask, std::uint64_t value, const char* primitive) {
  return current_block(primitive).rendezvous(mask, value, primitive);
}

void* dynamic_shared_memory() { return current_block("dynamic shared memory").dynamic_shared(); }

void copy_async(void* dst, const void* src, std::size_t bytes) {
  Thread& t = current_block("copy_async").thread();
  if (bytes > 16) trap("copy_async of more than 16 bytes");
  PendingCopy c{dst, {}, bytes};
  std::memcpy(c.bytes.data(), src, bytes);
  t.open_copies.push_back(c);
}

static void land(const std::vector<PendingCopy>& group) {
  for (const PendingCopy& c : group) std::memcpy(c.dst, c.bytes.data(), c.size);
}

void commit_async() {
  Block& b = current_block("commit_async");
  Thread& t = b.thread();
  if (b.land_early()) {  // landed now; still a group for wait_async to count
    land(t.open_copies);
    t.copy_groups.emplace_back();
  } else {
    t.copy_groups.push_back(std::move(t.open_copies));
  }
  t.open_copies.clear();
}

void wait_async(int pending) {
  Thread& t = current_block("wait_async").thread();
  while (int(t.copy_groups.size()) > pending) {
    land(t.copy_groups.front());
    t.copy_groups.pop_front();
  }
}

unsigned lane_id() { return current_block("lane_id").lane(); }

void trap(const char* what) {
  Block& b = current_block("__trap");
  throw KernelError(b.where() + ", thread (" + std::to_string(threadIdx.x) + "," + std::to_string(threadIdx.y) + "," +
                    std::to_string(threadIdx.z) + "): " + what);
}

}  // namespace transmamba::emu
