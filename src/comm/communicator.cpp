// Communicator: construction, sub-communicators, point-to-point messages and request waits.
// The collectives are in collectives.cpp.
#include "comm/communicator.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "core/error.h"

namespace epserve {
namespace {

constexpr uint32_t kSeqMask = (1u << 23) - 1;

}  // namespace

Request& Request::operator=(Request&& other) noexcept {
  std::swap(ucx_, other.ucx_);
  std::swap(worker_, other.worker_);
  peer_ = other.peer_;
  is_recv_ = other.is_recv_;
  expected_bytes_ = other.expected_bytes_;
  iov_ = std::move(other.iov_);
  return *this;
}

Request::~Request() {
  if (ucx_ && worker_) {
    ucp_request_cancel(worker_, ucx_);
    ucp_request_free(ucx_);
  }
}

std::shared_ptr<Communicator> Communicator::create_world(const RankInfo& info,
                                                         const CommOptions& options) {
  auto world = std::make_shared<World>(info, options);
  std::vector<int> ranks(info.world_size);
  for (int r = 0; r < info.world_size; ++r) ranks[r] = r;
  auto comm = std::make_shared<Communicator>(world, std::move(ranks), 0);
  // Every rank is connected once the first message got through.
  comm->set_context("start-up");
  comm->barrier();
  comm->set_context("");
  return comm;
}

Communicator::Communicator(std::shared_ptr<World> world, std::vector<int> world_ranks, int comm_id)
    : world_(std::move(world)),
      world_ranks_(std::move(world_ranks)),
      comm_id_(comm_id),
      timeout_(world_->options().timeout) {
  auto it = std::find(world_ranks_.begin(), world_ranks_.end(), world_->rank());
  EPS_CHECK(it != world_ranks_.end(), "rank {} is not a member of the communicator it builds",
            world_->rank());
  rank_ = static_cast<int>(it - world_ranks_.begin());
}

WaitSpec Communicator::wait_spec(const char* op) const {
  WaitSpec spec;
  spec.op = current_op_ ? current_op_ : op;
  spec.context = &context_;
  spec.timeout = timeout_;
  return spec;
}

std::shared_ptr<Communicator> Communicator::split(int color, int key) {
  int32_t mine[2] = {color, key};
  std::vector<int32_t> all(2 * size());
  allgather(mine, sizeof(mine), all.data());
  std::set<int> colors;
  for (int r = 0; r < size(); ++r) {
    if (all[2 * r] >= 0) colors.insert(all[2 * r]);
  }
  int32_t base = 0;
  if (rank_ == 0 && !colors.empty())
    base = world_->allocate_comm_ids(static_cast<int>(colors.size()));
  broadcast(&base, sizeof(base), 0);
  if (color < 0) return nullptr;
  int index = static_cast<int>(std::distance(colors.begin(), colors.find(color)));
  int comm_id = base + index;
  EPS_CHECK(comm_id < 0xFFFF, "too many communicators were created (id {})", comm_id);
  std::vector<std::pair<int, int>> members;  // (key, rank in this communicator)
  for (int r = 0; r < size(); ++r) {
    if (all[2 * r] == color) members.push_back({all[2 * r + 1], r});
  }
  std::sort(members.begin(), members.end());
  std::vector<int> ranks;
  for (auto& [k, r] : members) ranks.push_back(world_ranks_[r]);
  auto comm = std::make_shared<Communicator>(world_, std::move(ranks), comm_id);
  comm->set_timeout(timeout_);
  return comm;
}

std::shared_ptr<Communicator> Communicator::group(const std::vector<int>& ranks) {
  std::set<int> seen;
  for (int r : ranks) {
    EPS_CHECK(r >= 0 && r < size() && seen.insert(r).second,
              "group ranks must be distinct ranks of the communicator (size {}), found {}", size(),
              r);
  }
  auto it = std::find(ranks.begin(), ranks.end(), rank_);
  bool member = it != ranks.end();
  return split(member ? 0 : -1, member ? static_cast<int>(it - ranks.begin()) : 0);
}

uint32_t Communicator::next_collective_tags(uint32_t rounds) {
  uint32_t first = seq_;
  seq_ = (seq_ + rounds) & kSeqMask;
  return first;
}

uint64_t Communicator::make_tag(int sender, uint32_t seq, bool p2p) const {
  return (uint64_t(comm_id_) << 48) | (uint64_t(p2p) << 47) | (uint64_t(seq & kSeqMask) << 24) |
         uint64_t(sender);
}

Request Communicator::isend_tagged(int peer, const void* data, size_t bytes, uint32_t seq,
                                   bool p2p) {
  EPS_CHECK(peer >= 0 && peer < size(), "send to rank {} outside the communicator (size {})", peer,
            size());
  Request req;
  req.worker_ = world_->worker();
  req.peer_ = world_ranks_[peer];
  ucp_request_param_t param{};
  void* r = ucp_tag_send_nbx(world_->ep(req.peer_), data, bytes, make_tag(rank_, seq, p2p), &param);
  if (UCS_PTR_IS_ERR(r)) world_->throw_peer_lost(wait_spec("send"), req.peer_, UCS_PTR_STATUS(r));
  req.ucx_ = r;
  return req;
}

Request Communicator::irecv_tagged(int peer, void* data, size_t bytes, uint32_t seq, bool p2p) {
  EPS_CHECK(peer >= 0 && peer < size(), "receive from rank {} outside the communicator (size {})",
            peer, size());
  Request req;
  req.worker_ = world_->worker();
  req.peer_ = world_ranks_[peer];
  req.is_recv_ = true;
  req.expected_bytes_ = bytes;
  // Always get a request (UCX 1.13 leaves recv_info unset on immediate completion), so that
  // wait_all can check the received length.
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
  void* r =
      ucp_tag_recv_nbx(world_->worker(), data, bytes, make_tag(peer, seq, p2p), ~0ull, &param);
  EPS_CHECK(!UCS_PTR_IS_ERR(r), "{}",
            world_->describe(wait_spec("recv"),
                             fmt::format("cannot receive from rank {} (UCX: {})", req.peer_,
                                         ucs_status_string(UCS_PTR_STATUS(r)))));
  req.ucx_ = r;
  return req;
}

Request Communicator::isend(int peer, const void* data, size_t bytes, int tag) {
  EPS_CHECK(tag >= 0 && uint32_t(tag) <= kSeqMask, "message tag {} outside [0, 2^23)", tag);
  return isend_tagged(peer, data, bytes, static_cast<uint32_t>(tag), true);
}

Request Communicator::irecv(int peer, void* data, size_t bytes, int tag) {
  EPS_CHECK(tag >= 0 && uint32_t(tag) <= kSeqMask, "message tag {} outside [0, 2^23)", tag);
  return irecv_tagged(peer, data, bytes, static_cast<uint32_t>(tag), true);
}

Request Communicator::isend_rows(int peer, const void* const* rows, size_t n, size_t row_bytes,
                                 int tag) {
  EPS_CHECK(tag >= 0 && uint32_t(tag) <= kSeqMask, "message tag {} outside [0, 2^23)", tag);
  EPS_CHECK(peer >= 0 && peer < size(), "send to rank {} outside the communicator (size {})", peer,
            size());
  if (n == 1) return isend_tagged(peer, rows[0], row_bytes, static_cast<uint32_t>(tag), true);
  Request req;
  req.worker_ = world_->worker();
  req.peer_ = world_ranks_[peer];
  req.iov_.resize(n);
  for (size_t i = 0; i < n; ++i) req.iov_[i] = {const_cast<void*>(rows[i]), row_bytes};
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_DATATYPE;
  param.datatype = ucp_dt_make_iov();
  void* r = ucp_tag_send_nbx(world_->ep(req.peer_), req.iov_.data(), n,
                             make_tag(rank_, static_cast<uint32_t>(tag), true), &param);
  if (UCS_PTR_IS_ERR(r)) world_->throw_peer_lost(wait_spec("send"), req.peer_, UCS_PTR_STATUS(r));
  req.ucx_ = r;
  return req;
}

void Communicator::send(int peer, const void* data, size_t bytes, int tag) {
  std::vector<Request> reqs;
  reqs.push_back(isend(peer, data, bytes, tag));
  wait_all(reqs, "send");
}

void Communicator::recv(int peer, void* data, size_t bytes, int tag) {
  std::vector<Request> reqs;
  reqs.push_back(irecv(peer, data, bytes, tag));
  wait_all(reqs, "recv");
}

void Communicator::wait_all(std::vector<Request>& requests, const char* op) {
  WaitSpec spec = wait_spec(op);
  size_t first_pending = 0;
  spec.waiting_for = [&] {
    for (size_t i = first_pending; i < requests.size(); ++i) {
      if (requests[i].ucx_) return requests[i].peer_;
    }
    return -1;
  };
  auto done = [&] {
    bool all = true;
    for (size_t i = first_pending; i < requests.size(); ++i) {
      Request& req = requests[i];
      if (!req.ucx_) continue;
      ucs_status_t st = ucp_request_check_status(req.ucx_);
      if (st == UCS_INPROGRESS) {
        all = false;
        continue;
      }
      size_t length = req.expected_bytes_;
      if (req.is_recv_ && st == UCS_OK) {
        ucp_tag_recv_info_t info{};
        ucp_tag_recv_request_test(req.ucx_, &info);
        length = info.length;
      }
      ucp_request_free(req.ucx_);
      req.ucx_ = nullptr;
      if (st == UCS_ERR_MESSAGE_TRUNCATED) {
        EPS_THROW("{}",
                  world_->describe(spec, fmt::format("rank {} sent more than the {} bytes expected",
                                                     req.peer_, req.expected_bytes_)));
      }
      if (st != UCS_OK) world_->throw_peer_lost(spec, req.peer_, st);
      EPS_CHECK(length == req.expected_bytes_, "{}",
                world_->describe(spec, fmt::format("expected {} bytes from rank {}, received {}",
                                                   req.expected_bytes_, req.peer_, length)));
    }
    while (first_pending < requests.size() && !requests[first_pending].ucx_) ++first_pending;
    return all;
  };
  world_->wait(spec, done);
  requests.clear();
}

}  // namespace epserve
