// NBD export benchmark (issue 12): `nbdcopy URI null:` reading input A as qcow2 from the engine's NbdServer and from
// `qemu-nbd -r -f qcow2` serving the same file, taking turns; ratio = our throughput / qemu-nbd's (target >= 0.8).
// qemu-nbd is started by this process and stopped by its id whatever happens.
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using VDisk.Engine.Chain;
using VDisk.Engine.Nbd;

namespace VDisk.Bench;

internal static class NbdBench
{
    public static void Run(string folder, string input, int runs)
    {
        if (!Tools.OnPath("nbdcopy") || !Tools.OnPath("qemu-nbd"))
        {
            Console.WriteLine("NBD export: skipped (needs nbdcopy from libnbd-bin and qemu-nbd from qemu-utils).");
            return;
        }
        string qcow2 = Path.Combine(folder, "nbd-A.qcow2");
        Tools.Run("qemu-img", "convert", "-O", "qcow2", input, qcow2);
        int qemuPort = FreePort();
        var qemu = Process.Start(new ProcessStartInfo("qemu-nbd") { ArgumentList = { "-r", "-f", "qcow2", "-e", "8", "-t", "-p", qemuPort.ToString(), qcow2 } })!;
        try
        {
            using var server = new NbdServer(new[] { new NbdExport("", ImageChain.Open(qcow2)) });
            int ourPort = server.ListenTcp(IPAddress.Loopback, 0).Port;
            WaitForPort(qemuPort);
            var (ours, theirs) = Tools.MedianPair(runs, null,
                () => Tools.Run("nbdcopy", $"nbd://127.0.0.1:{ourPort}", "null:"),
                () => Tools.Run("nbdcopy", $"nbd://127.0.0.1:{qemuPort}", "null:"));
            double gib = new FileInfo(input).Length / (double)(1L << 30);
            double ratio = theirs / ours;
            Console.WriteLine($"NBD export: nbdcopy of input A as qcow2 ({gib:F1} GiB guest), median of {runs} runs. Ratio = our throughput / qemu-nbd's (target >= 0.8).");
            Console.WriteLine($"{"line",-40} {"VDisk s",9} {"qemu s",9} {"ratio",7}");
            Console.WriteLine($"{"nbdcopy from export vs qemu-nbd -r",-40} {ours,9:F3} {theirs,9:F3} {ratio,7:F2}{(ratio < 0.8 ? "  (under target)" : "")}");
        }
        finally
        {
            if (!qemu.HasExited) qemu.Kill();
            qemu.WaitForExit();
            File.Delete(qcow2);
        }
    }

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    private static void WaitForPort(int port)
    {
        for (int i = 0; i < 100; i++)
        {
            try
            {
                using var client = new TcpClient();
                client.Connect(IPAddress.Loopback, port);
                return;
            }
            catch (SocketException)
            {
                Thread.Sleep(50);
            }
        }
        throw new InvalidOperationException($"qemu-nbd did not listen on port {port}.");
    }
}
