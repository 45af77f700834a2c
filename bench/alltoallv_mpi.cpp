// MPI peer of dispatch_bench: times OpenMPI's MPI_Alltoallv moving given per-(source, destination)
// byte counts, so dispatch and combine can be compared with it on the same bytes in the same run.
// Input file: one case per line, "<name> <ranks*ranks byte counts, row = source>". Output (rank 0):
// "<name> <median microseconds> <best microseconds> <iterations>" per case. Launched by
// dispatch_bench through mpirun --allow-run-as-root --oversubscribe -np <ranks>.
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (argc < 2) {
    if (rank == 0) std::fprintf(stderr, "usage: alltoallv_mpi CASES_FILE\n");
    MPI_Finalize();
    return 2;
  }
  std::ifstream in(argv[1]);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::string name;
    ss >> name;
    std::vector<long long> m(size * size);
    for (auto& v : m) ss >> v;
    std::vector<int> scount(size), sdisp(size), rcount(size), rdisp(size);
    long long stotal = 0, rtotal = 0;
    for (int p = 0; p < size; ++p) {
      scount[p] = static_cast<int>(m[rank * size + p]);
      rcount[p] = static_cast<int>(m[p * size + rank]);
      sdisp[p] = static_cast<int>(stotal);
      rdisp[p] = static_cast<int>(rtotal);
      stotal += scount[p];
      rtotal += rcount[p];
    }
    std::vector<char> send(std::max(1LL, stotal), 1), recv(std::max(1LL, rtotal), 0);
    long long per_iter = std::max(stotal, rtotal);
    int iters = per_iter > (64 << 20) ? 5 : per_iter > (4 << 20) ? 20 : 200;
    std::vector<double> times;
    for (int i = 0; i < iters + 3; ++i) {
      MPI_Barrier(MPI_COMM_WORLD);
      double t0 = MPI_Wtime();
      MPI_Alltoallv(send.data(), scount.data(), sdisp.data(), MPI_BYTE, recv.data(), rcount.data(),
                    rdisp.data(), MPI_BYTE, MPI_COMM_WORLD);
      double t = MPI_Wtime() - t0, tmax = 0;
      MPI_Allreduce(&t, &tmax, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      if (i >= 3) times.push_back(tmax);
    }
    std::sort(times.begin(), times.end());
    if (rank == 0) {
      std::printf("%s %.3f %.3f %d\n", name.c_str(), times[times.size() / 2] * 1e6, times[0] * 1e6,
                  iters);
    }
    std::fflush(stdout);
  }
  MPI_Finalize();
  return 0;
}
