"""The ground floor every layer may use: device choice and seeding (`device`), the matmul peak (`peak`)."""
